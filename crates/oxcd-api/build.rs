//! Compiles etcd's protos (and oxcd's internal ones) with protox, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
        "proto/oxcdpb/internal.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    // The descriptors themselves, for the JSON gateway's proto3 JSON conversion.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        // prost's codec with a bound on txn nesting (see src/codec.rs).
        .codec_path("crate::codec::EtcdCodec")
        // Keys and values are `Bytes`: decoding from a `Bytes` buffer slices instead of copying.
        .bytes(".")
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
