#!/usr/bin/python3
"""Calls a pi-agent's NodeAgent service directly over mTLS, for development and troubleshooting
until `pictl` (which goes through the controller) is available.

  PYTHONPATH=build/proto/python deploy/scripts/agent_call.py --pki .local/pki \
      --address 127.0.0.1:9091 metrics | health | gpio write 17 1 | gpio read 17 |
      gpio release 17 | exec /usr/bin/uptime | logs SOURCE [--follow] [--limit N]
"""

import argparse
import os
import sys

import grpc
from google.protobuf import empty_pb2, json_format

from picontroller.v1 import agent_pb2, agent_pb2_grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:9091")
    parser.add_argument("--pki", required=True, help="directory with ca.crt and the client pair")
    parser.add_argument("--identity", default="admin", help="client certificate file stem")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("metrics")
    sub.add_parser("health")
    gpio = sub.add_parser("gpio")
    gpio.add_argument("action", choices=["read", "write", "release"])
    gpio.add_argument("line", help="offset (17) or line name (GPIO17)")
    gpio.add_argument("value", nargs="?", type=int)
    gpio.add_argument("--chip", default="")
    run = sub.add_parser("exec")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    logs = sub.add_parser("logs")
    logs.add_argument("source")
    logs.add_argument("--follow", action="store_true")
    logs.add_argument("--limit", type=int, default=0)
    logs.add_argument("--grep", default="")
    args = parser.parse_args()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(args.pki, "ca.crt")),
        private_key=read(os.path.join(args.pki, args.identity + ".key")),
        certificate_chain=read(os.path.join(args.pki, args.identity + ".crt")),
    )
    stub = agent_pb2_grpc.NodeAgentStub(grpc.secure_channel(args.address, credentials))
    show = lambda message: print(json_format.MessageToJson(message))  # noqa: E731
    try:
        if args.command == "metrics":
            show(stub.GetSystemMetrics(empty_pb2.Empty(), timeout=10))
        elif args.command == "health":
            show(stub.HealthCheck(empty_pb2.Empty(), timeout=10))
        elif args.command == "gpio":
            request = agent_pb2.GPIORequest(
                chip=args.chip,
                action=getattr(agent_pb2, "GPIO_ACTION_" + args.action.upper()),
            )
            if args.line.isdigit():
                request.offset = int(args.line)
            else:
                request.line_name = args.line
            if args.value is not None:
                request.value = args.value
            show(stub.ControlGPIO(request, timeout=10))
        elif args.command == "exec":
            result = stub.ExecuteCommand(agent_pb2.CommandRequest(argv=args.argv), timeout=330)
            sys.stdout.buffer.write(result.stdout)
            sys.stderr.buffer.write(result.stderr)
            return result.exit_code if result.exit_code >= 0 else 128 + result.signal
        elif args.command == "logs":
            request = agent_pb2.LogFilter(
                source=args.source, follow=args.follow, limit=args.limit, contains=args.grep
            )
            for entry in stub.StreamLogs(request):
                print(entry.message)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
