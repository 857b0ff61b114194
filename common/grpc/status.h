#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace pi::common {

// The edge conversion: core errors keep their code and message on the wire.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace pi::common
