// Checkpoint loading: dtype conversions, round trips, and clear errors on bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "io/safetensors.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

using test::error_of;

void write_raw(const std::filesystem::path& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = header.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header << data;
}

TEST(Safetensors, HalfConversionsMatchIeee) {
  // Values from the IEEE 754 binary16 tables.
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);          // tie to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);          // tie to even (2)
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);   // tie to even
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  // Every half value survives a round trip.
  for (uint32_t h = 0; h < 0x7c00; ++h) ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << h;
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie to even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);
}

TEST(Safetensors, WriteThenReadEveryDtype) {
  const auto dir = test::scratch_dir("safetensors-roundtrip");
  const std::vector<float> values = {1.5f, -2.25f, 0.0f, 3.0f, 100.0f, -0.125f};
  std::vector<std::byte> f32(values.size() * 4), f16(values.size() * 2), bf16(values.size() * 2);
  std::memcpy(f32.data(), values.data(), f32.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = f32_to_f16(values[i]), b = f32_to_bf16(values[i]);
    std::memcpy(f16.data() + 2 * i, &h, 2);
    std::memcpy(bf16.data() + 2 * i, &b, 2);
  }
  write_safetensors(dir / "model.safetensors", {{"a", DType::F32, {2, 3}, f32}, {"b", DType::F16, {6}, f16}, {"c", DType::BF16, {3, 2}, bf16}});
  SafetensorsCheckpoint checkpoint(dir);
  for (const char* name : {"a", "b", "c"}) EXPECT_EQ(to_f32(checkpoint.tensor(name)), values) << name;
  EXPECT_EQ(checkpoint.tensor("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.tmp"));
}

// Integer tensors (quantized checkpoints' codes, zero points, shapes) keep their values; the
// writer puts wider dtypes first so each starts aligned; they never pass for float values.
TEST(Safetensors, IntegerDtypesRoundTripAndStayIntegers) {
  const auto dir = test::scratch_dir("safetensors-integers");
  const std::vector<int8_t> i8 = {-128, -1, 0, 7, 127};
  const std::vector<uint8_t> u8 = {0, 1, 0x69, 255, 16, 8, 9};
  const std::vector<int32_t> i32 = {2048, -3, 2147483647};
  const std::vector<float> f32 = {0.5f, -4.f};
  const std::vector<int64_t> i64 = {4096, -1, int64_t{1} << 40};
  write_safetensors(dir / "model.safetensors", {{"codes", DType::U8, {7}, std::as_bytes(std::span(u8))},
                                                {"long", DType::I64, {3}, std::as_bytes(std::span(i64))},
                                                {"signed", DType::I8, {5}, std::as_bytes(std::span(i8))},
                                                {"shape", DType::I32, {3}, std::as_bytes(std::span(i32))},
                                                {"scale", DType::F32, {2}, std::as_bytes(std::span(f32))}});
  SafetensorsCheckpoint checkpoint(dir);
  const auto& signed_codes = checkpoint.tensor("signed");
  EXPECT_EQ(signed_codes.dtype, DType::I8);
  EXPECT_EQ(std::vector<int8_t>(i8_values(signed_codes).begin(), i8_values(signed_codes).end()), i8);
  EXPECT_EQ(std::vector<uint8_t>(u8_values(checkpoint.tensor("codes")).begin(), u8_values(checkpoint.tensor("codes")).end()), u8);
  EXPECT_EQ(i32_values(checkpoint.tensor("shape")), i32);
  EXPECT_EQ(i64_values(checkpoint.tensor("long")), i64);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(checkpoint.tensor("long").data) % 8, 0u);  // widest first
  EXPECT_NE(error_of([&] { (void)to_f32(checkpoint.tensor("long")); }).find("holds I64 integers"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)i64_values(checkpoint.tensor("shape")); }).find("expected I64"), std::string::npos);
  EXPECT_EQ(to_f32(checkpoint.tensor("scale")), f32);
  // 8-byte length + header padded to 8: the data section is 8-aligned, and so are the I32
  // and F32 tensors written before the 1-byte ones.
  for (const char* name : {"shape", "scale"})
    EXPECT_EQ(reinterpret_cast<uintptr_t>(checkpoint.tensor(name).data) % 4, 0u) << name;
  const std::string refused = error_of([&] { (void)to_f32(signed_codes); });
  EXPECT_NE(refused.find("model.safetensors: tensor 'signed' holds I8 integers"), std::string::npos) << refused;
  const std::string wrong = error_of([&] { (void)i8_values(checkpoint.tensor("codes")); });
  EXPECT_NE(wrong.find("tensor 'codes' has dtype U8, expected I8"), std::string::npos) << wrong;
  EXPECT_NE(error_of([&] { (void)i32_values(checkpoint.tensor("scale")); }).find("expected I32"), std::string::npos);
  // The writer refuses bytes that do not match the shape.
  EXPECT_NE(error_of([&] {
              write_safetensors(dir / "bad.safetensors", {{"x", DType::I32, {2}, std::as_bytes(std::span(i8))}});
            }).find("5 bytes for 2 elements of I32"),
            std::string::npos);
}

TEST(Safetensors, ShardedIndexIsFollowed) {
  const auto dir = test::synthetic_model("llama-bf16-sharded");
  SafetensorsCheckpoint checkpoint(dir);
  EXPECT_TRUE(checkpoint.contains("model.embed_tokens.weight"));
  EXPECT_TRUE(checkpoint.contains("lm_head.weight"));
  EXPECT_EQ(checkpoint.dominant_dtype(), DType::BF16);
}

struct BadFile {
  const char* label;
  std::string header;
  std::string data;
  const char* expected;  // substring of the message
};

void PrintTo(const BadFile& bad, std::ostream* out) { *out << bad.label; }

class SafetensorsBadInput : public testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsBadInput, IsRefusedWithAClearMessage) {
  const BadFile& bad = GetParam();
  const auto dir = test::scratch_dir(std::string("safetensors-bad-") + bad.label);
  write_raw(dir / "model.safetensors", bad.header, bad.data);
  const std::string message = error_of([&] { SafetensorsCheckpoint checkpoint(dir); });
  EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find(bad.expected), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadInput,
    testing::Values(
        BadFile{"offsets-outside", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'), "outside the data section"},
        BadFile{"wrong-dtype", R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0'), "dtype 'F64'"},
        BadFile{"i32-size", R"({"w":{"dtype":"I32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'), "expected 12"},
        BadFile{"u8-size", R"({"w":{"dtype":"U8","shape":[2,3],"data_offsets":[0,8]}})", std::string(8, '\0'), "expected 6"},
        BadFile{"i8-outside", R"({"w":{"dtype":"I8","shape":[9],"data_offsets":[0,9]}})", std::string(8, '\0'), "outside the data section"},
        BadFile{"size-mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'), "expected 12"},
        BadFile{"negative-shape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0'), "negative"},
        BadFile{"not-json", R"({"w":)", "", "malformed"},
        BadFile{"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, '\0'), "overlap"},
        BadFile{"reversed-offsets", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0'), "outside"},
        BadFile{"missing-fields", R"({"w":{"dtype":"F32"}})", "", "needs"}),
    [](const auto& test_info) {
      std::string name = test_info.param.label;
      for (char& ch : name)
        if (ch == '-') ch = '_';
      return name;
    });

TEST(Safetensors, TruncatedFileIsRefused) {
  const auto dir = test::scratch_dir("safetensors-truncated");
  const auto model = test::synthetic_model("opt-pre");
  const auto size = std::filesystem::file_size(model / "model.safetensors");
  std::filesystem::copy_file(model / "model.safetensors", dir / "model.safetensors");
  for (uint64_t keep : {uint64_t{0}, uint64_t{5}, uint64_t{8}, uint64_t{40}, size / 2, size - 1}) {
    std::filesystem::resize_file(dir / "model.safetensors", keep);
    const std::string message = error_of([&] { SafetensorsCheckpoint checkpoint(dir); });
    EXPECT_NE(message.find("model.safetensors"), std::string::npos) << keep << ": " << message;
    EXPECT_TRUE(message.find("truncated") != std::string::npos || message.find("malformed") != std::string::npos)
        << keep << ": " << message;
  }
}

TEST(Safetensors, HeaderClaimingATerabyteIsRefusedEarly) {
  const auto dir = test::scratch_dir("safetensors-huge");
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t length = uint64_t{1} << 40;
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << "{}";
  out.close();
  const std::string message = error_of([&] { SafetensorsCheckpoint checkpoint(dir); });
  EXPECT_NE(message.find("header claims"), std::string::npos) << message;
}

TEST(Safetensors, MissingTensorAndWrongShapeNameTheTensor) {
  const auto dir = test::synthetic_model("opt-pre");
  SafetensorsCheckpoint checkpoint(dir);
  EXPECT_NE(error_of([&] { checkpoint.tensor("nope.weight"); }).find("missing tensor 'nope.weight'"), std::string::npos);
  const std::string message = error_of([&] { checkpoint.tensor("lm_head.weight_absent"); });
  EXPECT_NE(message.find("lm_head.weight_absent"), std::string::npos);
  const std::string shape = error_of([&] { checkpoint.tensor("model.decoder.embed_tokens.weight", {1, 2}); });
  EXPECT_NE(shape.find("has shape [96,32]"), std::string::npos) << shape;
}

}  // namespace
}  // namespace cq
