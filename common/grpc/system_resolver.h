#pragma once

namespace pi::common {

// Makes gRPC resolve host names through the C library (nsswitch) instead of its built-in c-ares
// DNS client, which knows nothing of mDNS: Pi clusters commonly name the head node
// "pi-head.local", which only resolves through nss-mdns. An operator's own GRPC_DNS_RESOLVER wins.
// Call before gRPC starts (first thing in main).
void UseSystemResolver();

}  // namespace pi::common
