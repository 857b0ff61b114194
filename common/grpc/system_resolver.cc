#include "common/grpc/system_resolver.h"

#include <cstdlib>

namespace pi::common {

void UseSystemResolver() { setenv("GRPC_DNS_RESOLVER", "native", /*overwrite=*/0); }

}  // namespace pi::common
