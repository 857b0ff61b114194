// Hookaido workers only interoperate if every name and field number matches DESIGN 4.1 exactly;
// this pins them, so a rename or renumbering fails here instead of at a user's worker.
#include <google/protobuf/descriptor.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "hookaido/worker/v1/workerapi.grpc.pb.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

struct Field {
  int number;
  std::string name;
  FieldDescriptor::Type type;
  bool repeated;
  std::string message_type;  // for message fields (and map entries: "map")
};

// The file as compiled into pi_proto (naming a generated class also links it in).
const google::protobuf::FileDescriptor* WorkerApiFile() {
  return hookaido::worker::v1::DequeueRequest::descriptor()->file();
}

const Descriptor* Message(const std::string& name) {
  const Descriptor* descriptor = WorkerApiFile()->FindMessageTypeByName(name);
  REQUIRE(descriptor != nullptr);
  return descriptor;
}

void CheckFields(const std::string& message, const std::vector<Field>& expected) {
  INFO(message);
  const Descriptor* descriptor = Message(message);
  CHECK(descriptor->field_count() == static_cast<int>(expected.size()));
  for (const Field& field : expected) {
    INFO(field.name);
    const FieldDescriptor* actual = descriptor->FindFieldByNumber(field.number);
    REQUIRE(actual != nullptr);
    CHECK(actual->name() == field.name);
    CHECK(actual->type() == field.type);
    CHECK(actual->is_repeated() == field.repeated);
    if (field.message_type == "map") {
      CHECK(actual->is_map());
    } else if (!field.message_type.empty()) {
      CHECK(actual->message_type()->full_name() == field.message_type);
    }
  }
}

constexpr auto kString = FieldDescriptor::TYPE_STRING;
constexpr auto kMessage = FieldDescriptor::TYPE_MESSAGE;
const std::string kDuration = "google.protobuf.Duration";
const std::string kTimestamp = "google.protobuf.Timestamp";

TEST_CASE("WorkerService has Hookaido's four unary methods at their paths") {
  CHECK(WorkerApiFile()->package() == "hookaido.worker.v1");
  const auto* service = WorkerApiFile()->FindServiceByName("WorkerService");
  REQUIRE(service != nullptr);
  CHECK(service->method_count() == 4);
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> methods = {
      {"Dequeue", {"hookaido.worker.v1.DequeueRequest", "hookaido.worker.v1.DequeueResponse"}},
      {"Ack", {"hookaido.worker.v1.AckRequest", "hookaido.worker.v1.AckResponse"}},
      {"Nack", {"hookaido.worker.v1.NackRequest", "hookaido.worker.v1.NackResponse"}},
      {"Extend", {"hookaido.worker.v1.ExtendRequest", "google.protobuf.Empty"}},
  };
  for (const auto& [name, types] : methods) {
    INFO(name);
    const auto* method = service->FindMethodByName(name);
    REQUIRE(method != nullptr);
    CHECK_FALSE(method->client_streaming());
    CHECK_FALSE(method->server_streaming());
    CHECK(method->input_type()->full_name() == types.first);
    CHECK(method->output_type()->full_name() == types.second);
    CHECK("/" + service->full_name() + "/" + method->name() ==
          "/hookaido.worker.v1.WorkerService/" + name);
  }
}

TEST_CASE("Worker messages keep Hookaido's field numbers, names and types") {
  CheckFields("DequeueRequest", {{1, "endpoint", kString, false, ""},
                                 {2, "batch", FieldDescriptor::TYPE_UINT32, false, ""},
                                 {3, "max_wait", kMessage, false, kDuration},
                                 {4, "lease_ttl", kMessage, false, kDuration}});
  CheckFields("DequeueResponse", {{1, "items", kMessage, true, "hookaido.worker.v1.DequeueItem"}});
  CheckFields("DequeueItem", {{1, "id", kString, false, ""},
                              {2, "lease_id", kString, false, ""},
                              {3, "received_at", kMessage, false, kTimestamp},
                              {4, "attempt", FieldDescriptor::TYPE_INT32, false, ""},
                              {5, "next_run_at", kMessage, false, kTimestamp},
                              {6, "route", kString, false, ""},
                              {7, "payload", FieldDescriptor::TYPE_BYTES, false, ""},
                              {8, "headers", kMessage, true, "map"},
                              {9, "trace", kMessage, true, "map"}});
  CheckFields("AckRequest", {{1, "endpoint", kString, false, ""},
                             {2, "lease_id", kString, false, ""},
                             {3, "lease_ids", kString, true, ""}});
  CheckFields("NackRequest", {{1, "endpoint", kString, false, ""},
                              {2, "lease_id", kString, false, ""},
                              {3, "lease_ids", kString, true, ""},
                              {4, "delay", kMessage, false, kDuration},
                              {5, "dead", FieldDescriptor::TYPE_BOOL, false, ""},
                              {6, "reason", kString, false, ""}});
  CheckFields("ExtendRequest", {{1, "endpoint", kString, false, ""},
                                {2, "lease_id", kString, false, ""},
                                {3, "extend_by", kMessage, false, kDuration}});
  CheckFields("AckResponse",
              {{1, "acked", FieldDescriptor::TYPE_UINT32, false, ""},
               {2, "conflicts", kMessage, true, "hookaido.worker.v1.LeaseConflict"}});
  CheckFields("NackResponse",
              {{1, "succeeded", FieldDescriptor::TYPE_UINT32, false, ""},
               {2, "conflicts", kMessage, true, "hookaido.worker.v1.LeaseConflict"}});
  CheckFields("LeaseConflict", {{1, "lease_id", kString, false, ""},
                                {2, "expired", FieldDescriptor::TYPE_BOOL, false, ""}});
}

}  // namespace
