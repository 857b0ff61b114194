#include "control-plane/cluster/agent_dialer.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "control-plane/cluster/node_names.h"

namespace pi::controlplane::cluster {

std::shared_ptr<grpc::Channel> AgentDialer::Channel(const std::string& node_id,
                                                    const std::string& address) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(node_id, address);
  auto found = channels_.find(key);
  if (found != channels_.end()) return found->second;
  // A node that moved leaves its old channel behind; drop it.
  for (auto it = channels_.begin(); it != channels_.end();) {
    it = it->first.first == node_id ? channels_.erase(it) : std::next(it);
  }
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride(NodeTlsName(node_id));
  // Log lines and command output can be large; the agent caps them itself.
  arguments.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  auto channel = grpc::CreateCustomChannel(address, credentials_, arguments);
  channels_.emplace(std::move(key), channel);
  return channel;
}

}  // namespace pi::controlplane::cluster
