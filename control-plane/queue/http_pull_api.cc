#include "control-plane/queue/http_pull_api.h"

#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/config/json_config.h"
#include "common/grpc/proto_time.h"
#include "control-plane/queue/http_status.h"

namespace pi::controlplane::queue {
namespace {

using common::HttpResponder;
using common::HttpResponse;
using nlohmann::json;

// DESIGN 5.1: request bodies are small JSON objects.
constexpr size_t kMaxPullBodyBytes = 1024 * 1024;
// Every waiting long poll holds a connection.
constexpr int kMaxPullConnections = 1024;
constexpr auto kMaxDuration = std::chrono::nanoseconds::max();
constexpr auto kLeaseConflictDetail = "lease is invalid or expired";

enum class Operation { kDequeue, kAck, kNack, kExtend };

struct Call {
  std::string endpoint;
  Operation operation;
};

// "{prefix}{endpoint}/{operation}" → the endpoint and operation; nullopt for any other path.
std::optional<Call> ParsePath(std::string_view path, std::string_view prefix) {
  if (!path.starts_with(prefix)) return std::nullopt;
  path.remove_prefix(prefix.size());
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  const std::string_view name = path.substr(slash + 1);
  constexpr std::array<std::pair<std::string_view, Operation>, 4> kOperations = {{
      {"dequeue", Operation::kDequeue},
      {"ack", Operation::kAck},
      {"nack", Operation::kNack},
      {"extend", Operation::kExtend},
  }};
  for (const auto& [operation_name, operation] : kOperations) {
    if (name == operation_name) return Call{std::string(path.substr(0, slash)), operation};
  }
  return std::nullopt;
}

std::string FormatTimestamp(WallTime time) {
  return google::protobuf::util::TimeUtil::ToString(common::ToProtoTimestamp(time));
}

json ItemToJson(const LeasedItem& item) {
  return json{
      {"id", item.id},
      {"lease_id", item.lease_id},
      {"received_at", FormatTimestamp(item.received_at)},
      {"attempt", item.attempt},
      {"next_run_at", FormatTimestamp(item.next_run_at)},
      {"route", item.route},
      {"payload_b64", absl::Base64Escape(item.payload)},
      {"headers", item.headers},
      {"trace", item.trace},
  };
}

// Serializes without throwing: these run on the engine's thread, where nothing may escape.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<json> ParseBody(const std::string& body) {
  json document = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  if (!document.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  return document;
}

// The lease ids of an ack or nack: exactly one of lease_id and lease_ids.
struct LeaseSelection {
  std::vector<std::string> ids;
  bool single = false;
};

absl::StatusOr<LeaseSelection> ReadLeaseSelection(const json& body, common::ConfigReader& reader) {
  LeaseSelection selection;
  std::string lease_id;
  std::vector<std::string> lease_ids;
  reader.Read("lease_id", &lease_id);
  reader.Read("lease_ids", &lease_ids);
  const bool has_single = body.contains("lease_id");
  const bool has_batch = body.contains("lease_ids");
  if (reader.ok() && has_single == has_batch) {
    return absl::InvalidArgumentError("give exactly one of lease_id and lease_ids");
  }
  if (has_single) {
    if (lease_id.empty()) return absl::InvalidArgumentError("lease_id is empty");
    selection.single = true;
    selection.ids.push_back(std::move(lease_id));
    return selection;
  }
  absl::StatusOr<std::vector<std::string>> distinct = DistinctLeaseIds(lease_ids);
  if (!distinct.ok()) return distinct.status();
  selection.ids = *std::move(distinct);
  return selection;
}

// Single form: 204, or 409 when the lease is not valid. Batch form: 200 with the count and the
// conflicts, or 409 with the same body when there are conflicts.
HttpResponse SettleAnswer(const absl::StatusOr<std::vector<LeaseResult>>& results, bool single,
                          const char* count_field) {
  if (!results.ok()) return HttpErrorFor(results.status());
  if (single) {
    if (!results->empty() && results->front().outcome == LeaseOutcome::kApplied) {
      return HttpResponse(204, "application/json", "");
    }
    return common::JsonError(409, "lease_conflict", kLeaseConflictDetail);
  }
  int64_t applied = 0;
  json conflicts = json::array();
  for (const LeaseResult& result : *results) {
    if (result.outcome == LeaseOutcome::kApplied) {
      ++applied;
    } else {
      conflicts.push_back(json{{"lease_id", result.lease_id},
                               {"expired", result.outcome == LeaseOutcome::kExpired}});
    }
  }
  const bool conflicted = !conflicts.empty();
  const json body{{count_field, applied}, {"conflicts", std::move(conflicts)}};
  return common::JsonResponse(conflicted ? 409 : 200, Dump(body));
}

common::HttpServer::Options ServerOptions(const PullTlsConfig& tls) {
  common::HttpServer::Options options;
  options.max_body_bytes = kMaxPullBodyBytes;
  options.max_connections = kMaxPullConnections;
  options.json_errors = true;
  if (!tls.cert_file.empty()) {
    options.tls = common::HttpServer::TlsOptions{tls.cert_file, tls.key_file, tls.client_ca,
                                                 tls.require_client_cert};
  }
  return options;
}

// One request after its path and method were accepted: reads the body, checks the token and
// calls the engine.
class PullCall {
 public:
  PullCall(QueueEngine& engine, const RouteTable& routes, common::HttpRequest request,
           HttpResponder respond)
      : engine_(engine), routes_(routes), request_(std::move(request)), respond_(respond) {}

  void Run(const Call& call) {
    auto body = ParseBody(request_.body);
    if (!body.ok()) return respond_(HttpErrorFor(body.status()));
    common::ConfigReader reader(*body, "");
    switch (call.operation) {
      case Operation::kDequeue:
        return Dequeue(call.endpoint, reader);
      case Operation::kAck:
      case Operation::kNack:
        return Settle(call, *body, reader);
      case Operation::kExtend:
        return Extend(call.endpoint, reader);
    }
  }

 private:
  // Malformed requests are refused before the token is looked at (DESIGN 4.1): `malformed` is
  // the operation's own check, after the reader's (types, unknown fields).
  absl::StatusOr<std::string> Authorize(const std::string& endpoint, common::ConfigReader& reader,
                                        absl::Status malformed = absl::OkStatus()) {
    if (auto status = reader.Finish(); !status.ok()) return status;
    if (!malformed.ok()) return malformed;
    std::optional<std::string_view> authorization;
    const auto header = request_.headers.find("authorization");
    if (header != request_.headers.end()) authorization = header->second;
    return routes_.AuthorizePull(endpoint, authorization);
  }

  void Dequeue(const std::string& endpoint, common::ConfigReader& reader) {
    DequeueRequest dequeue;
    int64_t batch = 1;
    reader.Read("batch", &batch, 0, std::numeric_limits<uint32_t>::max());
    reader.Read("max_wait", &dequeue.max_wait, std::chrono::nanoseconds(0), kMaxDuration);
    reader.Read("lease_ttl", &dequeue.lease_ttl, std::chrono::nanoseconds(0), kMaxDuration);
    auto route = Authorize(endpoint, reader);
    if (!route.ok()) return respond_(HttpErrorFor(route.status()));
    dequeue.route = *route;
    // The engine clamps to the route's limit; this only keeps the value an int.
    dequeue.batch = static_cast<int>(std::min<int64_t>(batch, kMaxDequeueBatch));
    HttpResponder respond = respond_;
    const uint64_t ticket = engine_.Dequeue(
        std::move(dequeue), [respond](absl::StatusOr<std::vector<LeasedItem>> items) {
          if (!items.ok()) return respond(HttpErrorFor(items.status()));
          json list = json::array();
          for (const LeasedItem& item : *items) list.push_back(ItemToJson(item));
          respond(common::JsonResponse(200, Dump(json{{"items", std::move(list)}})));
        });
    // A long poll whose client went away must not lease items to nobody.
    respond_.OnDisconnect([&engine = engine_, ticket] { engine.CancelDequeue(ticket); });
  }

  void Settle(const Call& call, const json& body, common::ConfigReader& reader) {
    auto selection = ReadLeaseSelection(body, reader);
    NackOptions nack;
    if (call.operation == Operation::kNack) {
      reader.Read("delay", &nack.delay, std::chrono::nanoseconds(0), kMaxDuration);
      reader.Read("dead", &nack.dead);
      reader.Read("reason", &nack.reason);
    }
    auto route = Authorize(call.endpoint, reader, selection.status());
    if (!route.ok()) return respond_(HttpErrorFor(route.status()));
    const bool single = selection->single;
    HttpResponder respond = respond_;
    if (call.operation == Operation::kAck) {
      engine_.Ack(*route, selection->ids,
                  [respond, single](absl::StatusOr<std::vector<LeaseResult>> results) {
                    respond(SettleAnswer(results, single, "acked"));
                  });
    } else {
      engine_.Nack(*route, selection->ids, nack,
                   [respond, single](absl::StatusOr<std::vector<LeaseResult>> results) {
                     respond(SettleAnswer(results, single, "succeeded"));
                   });
    }
  }

  void Extend(const std::string& endpoint, common::ConfigReader& reader) {
    std::string lease_id;
    std::chrono::nanoseconds extend_by{0};
    reader.Read("lease_id", &lease_id);
    reader.Read("extend_by", &extend_by, std::chrono::nanoseconds(0), kMaxDuration);
    auto route = Authorize(
        endpoint, reader,
        lease_id.empty() ? absl::InvalidArgumentError("lease_id is required") : absl::OkStatus());
    if (!route.ok()) return respond_(HttpErrorFor(route.status()));
    HttpResponder respond = respond_;
    engine_.Extend(*route, lease_id, extend_by, [respond](absl::Status status) {
      if (!status.ok()) return respond(HttpErrorFor(status));
      respond(HttpResponse(204, "application/json", ""));
    });
  }

  QueueEngine& engine_;
  const RouteTable& routes_;
  common::HttpRequest request_;
  HttpResponder respond_;
};

}  // namespace

HttpPullApi::HttpPullApi(QueueEngine& engine, const RouteTable& routes, std::string prefix,
                         const PullTlsConfig& tls)
    : engine_(engine), routes_(routes), prefix_(std::move(prefix)), server_(ServerOptions(tls)) {
  // One handler for every path: an unknown endpoint must still be answered 401 before 404.
  server_.HandleUnmatched([this](common::HttpRequest request, HttpResponder respond) {
    const auto call = ParsePath(request.path, prefix_);
    if (!call) {
      return respond(
          common::JsonError(404, "not_found", fmt::format("no such path: {}", request.path)));
    }
    if (request.method != "POST") {
      auto response =
          common::JsonError(405, "method_not_allowed",
                            fmt::format("{} is not allowed here; use POST", request.method));
      response.headers.emplace_back("Allow", "POST");
      return respond(std::move(response));
    }
    PullCall(engine_, routes_, std::move(request), std::move(respond)).Run(*call);
  });
}

absl::StatusOr<uint16_t> HttpPullApi::Start(std::string_view listen) {
  return server_.Start(listen);
}

void HttpPullApi::Stop() { server_.Stop(); }

}  // namespace pi::controlplane::queue
