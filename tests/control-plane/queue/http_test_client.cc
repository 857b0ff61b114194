#include "tests/control-plane/queue/http_test_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include "common/system/clock.h"

namespace pi::controlplane::queue::http_test {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

http::response<http::string_body> HttpCall(uint16_t port,
                                           http::request<http::string_body> request) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  http::response<http::string_body> response;
  beast::error_code error;
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), error);
  if (error) {
    response.result(0u);
    response.body() = "connect: " + error.message();
    return response;
  }
  request.set(http::field::host, "127.0.0.1");
  request.keep_alive(false);
  request.prepare_payload();
  // A server that refuses a large body may answer and close before it is all sent: the answer
  // is still read.
  beast::error_code write_error;
  http::write(stream, request, write_error);
  beast::flat_buffer buffer;
  http::read(stream, buffer, response, error);
  if (error) {
    response = {};
    response.result(0u);
    response.body() = "write: " + write_error.message() + ", read: " + error.message();
    return response;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, error);
  return response;
}

absl::StatusOr<std::unique_ptr<QueueEngine>> OpenTestEngine(
    const std::string& dir, const QueuesConfig& config, std::unique_ptr<SqliteQueueStore>& store) {
  auto opened = SqliteQueueStore::Open(dir + "/queue.db", common::RealClock());
  if (!opened.ok()) return opened.status();
  store = *std::move(opened);
  return QueueEngine::Open(*store, common::RealClock(), config.Limits());
}

}  // namespace pi::controlplane::queue::http_test
