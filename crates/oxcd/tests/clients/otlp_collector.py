"""An OTLP/gRPC trace collector for the tracing test, built on OpenTelemetry's own Python
bindings of the protocol (the `opentelemetry-proto` package) and grpcio: it serves
TraceService/Export on 127.0.0.1 (a port the OS picks, printed on the first line of stdout) and
appends every request it receives, as OTLP's JSON encoding, one line each, to the file named by
its argument."""

import sys
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path

    def Export(self, request, context):
        with open(self.path, "a") as f:
            f.write(MessageToJson(request, indent=None) + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
