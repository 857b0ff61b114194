#pragma once

#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/queue/sqlite_queue_store.h"

// What the HTTP ingress and Pull API tests share: a blocking client and a real engine.
namespace pi::controlplane::queue::http_test {

// One request over a fresh connection (blocking Beast client). Tests call it from several threads
// at once, so it reports failures as status 0 with the error as the body instead of through
// Catch, which is not thread-safe.
boost::beast::http::response<boost::beast::http::string_body> HttpCall(
    uint16_t port, boost::beast::http::request<boost::beast::http::string_body> request);

// A real engine over a real SQLite file in `dir` with the routes of `config`; `store` receives the
// store, which must outlive the engine.
absl::StatusOr<std::unique_ptr<QueueEngine>> OpenTestEngine(
    const std::string& dir, const QueuesConfig& config, std::unique_ptr<SqliteQueueStore>& store);

}  // namespace pi::controlplane::queue::http_test
