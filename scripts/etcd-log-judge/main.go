// Reads Raft entry data on stdin, one per line ("normal <hex>" or "confchange <hex>"), and prints
// what etcd 3.4's own code makes of each, one JSON object per line: the request etcd's applier
// would apply (its `applyEntryNormal` parse: an InternalRaftRequest, else a raw v2 Request), or
// the configuration change with its member context (`applyConfChange`). oxcd's tests compare this
// with what oxcd meant to write.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"go.etcd.io/etcd/etcdserver/api/membership"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/pkg/pbutil"
	"go.etcd.io/etcd/raft/raftpb"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		kind, h, _ := strings.Cut(strings.TrimSpace(in.Text()), " ")
		data, err := hex.DecodeString(h)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad hex:", err)
			os.Exit(2)
		}
		var v interface{}
		switch kind {
		case "normal":
			var raftReq pb.InternalRaftRequest
			if !pbutil.MaybeUnmarshal(&raftReq, data) {
				var r pb.Request
				if err := r.Unmarshal(data); err != nil {
					v = map[string]string{"error": err.Error()}
				} else {
					v = map[string]interface{}{"v2": r}
				}
			} else {
				v = map[string]interface{}{"v3": raftReq}
			}
		case "confchange":
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(data); err != nil {
				v = map[string]string{"error": err.Error()}
				break
			}
			res := map[string]interface{}{"id": cc.ID, "type": cc.Type.String(), "node": cc.NodeID}
			if len(cc.Context) > 0 {
				var ctx membership.ConfigChangeContext
				if err := json.Unmarshal(cc.Context, &ctx); err != nil {
					res["context_error"] = err.Error()
				} else {
					res["context"] = ctx
				}
			}
			v = res
		default:
			fmt.Fprintln(os.Stderr, "unknown kind:", kind)
			os.Exit(2)
		}
		if err := out.Encode(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
