#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace pi::controlplane::cluster {

// Channels from the controller to node agents, one per node and address, authenticated with the
// controller's certificate. The agent must present the certificate its node joined with: the
// channel checks the name "<id>.node.pi-controller" in it, which addresses cannot spoof.
class AgentDialer {
 public:
  explicit AgentDialer(std::shared_ptr<grpc::ChannelCredentials> credentials)
      : credentials_(std::move(credentials)) {}

  std::shared_ptr<grpc::Channel> Channel(const std::string& node_id, const std::string& address);

 private:
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace pi::controlplane::cluster
