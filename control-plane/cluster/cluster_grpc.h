#pragma once

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "control-plane/cluster/cluster.h"
#include "picontroller/v1/control_plane.pb.h"

// What the ControlPlane and Admin adapters share: the caller as the TLS layer verified it, and
// the conversions between cluster core types and their wire messages.
namespace pi::controlplane::cluster {

// The verified client certificate's identity and fingerprint; an empty identity when the caller
// presented no certificate (or one that names no identity).
Caller CallerFromContext(const grpc::ServerContextBase& context);

// The "host" part of the caller's address (grpc's peer string "ipv4:10.0.0.7:5123"), or empty.
std::string PeerHost(const grpc::ServerContextBase& context);

picontroller::v1::NodeState ToProto(store::NodeState state);
absl::StatusOr<store::NodeState> FromProto(picontroller::v1::NodeState state);
void ToProto(const NodeView& view, picontroller::v1::Node* out);
void ToProto(const store::Node& node, picontroller::v1::Node* out);
// `with_secret_hash` only for controller peers.
void ToProto(const store::JoinToken& token, bool with_secret_hash,
             picontroller::v1::JoinTokenInfo* out);
// DATA_LOSS when a stored change record does not parse.
absl::Status ToProto(const store::Change& change, bool with_secret_hash,
                     picontroller::v1::ClusterChange* out);

}  // namespace pi::controlplane::cluster
