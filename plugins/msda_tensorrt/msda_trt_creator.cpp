// MsdaPluginCreator and the validation of its fields (see msda_trt_plugin.h).
#include "msda_trt_plugin.h"

#include <cstring>
#include <exception>
#include <limits>

namespace detrt {
namespace trt {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// Element i of an INT32 or INT64 field; memcpy because PluginField::data carries no alignment promise.
int64_t field_value(const nvinfer1::PluginField& field, int32_t i) {
  if (field.type == nvinfer1::PluginFieldType::kINT32) {
    int32_t value = 0;
    std::memcpy(&value, static_cast<const char*>(field.data) + i * sizeof(int32_t), sizeof(value));
    return value;
  }
  int64_t value = 0;
  std::memcpy(&value, static_cast<const char*>(field.data) + i * sizeof(int64_t), sizeof(value));
  return value;
}

// Fills `table` from a "spatial_shapes" field; returns an error message or an empty string.
std::string parse_spatial_shapes(const nvinfer1::PluginField& field, LevelTable& table) {
  if (field.type != nvinfer1::PluginFieldType::kINT32 && field.type != nvinfer1::PluginFieldType::kINT64) {
    return format("field '%s' must be an INT32 or INT64 array, got PluginFieldType %d", kSpatialShapesField,
                  static_cast<int>(field.type));
  }
  if (field.length < 2 || field.length % 2 != 0 || field.length > 2 * DETRT_MSDA_MAX_LEVELS) {
    return format("field '%s' must hold H0, W0, H1, W1, ... for 1 to %d levels (an even length of 2 to %d), "
                  "got length %d",
                  kSpatialShapesField, DETRT_MSDA_MAX_LEVELS, 2 * DETRT_MSDA_MAX_LEVELS, field.length);
  }
  if (field.data == nullptr) {
    return format("field '%s' has length %d but no data", kSpatialShapesField, field.length);
  }
  table.levels = field.length / 2;
  table.total = 0;
  for (int32_t l = 0; l < table.levels; ++l) {
    const int64_t height = field_value(field, 2 * l);
    const int64_t width = field_value(field, 2 * l + 1);
    if (height < 1 || width < 1 || height > kIntMax || width > kIntMax || height * width > kIntMax) {
      return format("field '%s': level %d is (H, W) = (%lld, %lld); both must be positive with H*W below 2^31",
                    kSpatialShapesField, l, static_cast<long long>(height), static_cast<long long>(width));
    }
    table.shapes[2 * l] = static_cast<int32_t>(height);
    table.shapes[2 * l + 1] = static_cast<int32_t>(width);
    table.starts[l] = static_cast<int32_t>(table.total);
    table.total += height * width;
    if (table.total > kIntMax) {
      return format("field '%s': the levels cover %lld values (sum of H*W), more than 2^31 - 1", kSpatialShapesField,
                    static_cast<long long>(table.total));
    }
  }
  return {};
}

}  // namespace

bool parse_fields(const nvinfer1::PluginFieldCollection* fields, std::optional<LevelTable>& table, std::string& error) {
  table.reset();
  if (fields == nullptr || fields->nbFields == 0) {
    return true;
  }
  if (fields->nbFields < 0 || fields->fields == nullptr) {
    error = format("malformed PluginFieldCollection (nbFields %d, fields %s)", fields->nbFields,
                   fields->fields == nullptr ? "null" : "set");
    return false;
  }
  for (int32_t i = 0; i < fields->nbFields; ++i) {
    const nvinfer1::PluginField& field = fields->fields[i];
    if (field.name == nullptr) {
      error = format("field %d has no name", i);
      return false;
    }
    // strncmp reads no further than the expected name and its terminator.
    if (std::strncmp(field.name, kSpatialShapesField, std::strlen(kSpatialShapesField) + 1) != 0) {
      error = format("unknown field '%.64s' (the only field is '%s')", field.name, kSpatialShapesField);
      return false;
    }
    if (table) {
      error = format("field '%s' is given more than once", kSpatialShapesField);
      return false;
    }
    LevelTable parsed;
    error = parse_spatial_shapes(field, parsed);
    if (!error.empty()) {
      return false;
    }
    table = parsed;
  }
  return true;
}

MsdaPluginCreator::MsdaPluginCreator(const PluginForm& form)
    : form_(form), field_(kSpatialShapesField, nullptr, nvinfer1::PluginFieldType::kINT32, 0) {
  fields_.nbFields = 1;
  fields_.fields = &field_;
}

nvinfer1::IPluginV3* MsdaPluginCreator::createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                                     nvinfer1::TensorRTPhase /*phase*/) noexcept {
  try {
    const std::string layer = name != nullptr ? name : "";
    std::optional<LevelTable> table;
    std::string error;
    if (!parse_fields(fc, table, error)) {
      report_error(format("%s (layer '%s'): %s; plugin not created", form_.name, layer.c_str(), error.c_str()).c_str());
      return nullptr;
    }
    return new MsdaPlugin(form_, layer, table);
  } catch (const std::exception& error) {
    report_error(error.what(), nullptr, nvinfer1::ErrorCode::kINTERNAL_ERROR);
    return nullptr;
  }
}

const nvinfer1::PluginFieldCollection* MsdaPluginCreator::getFieldNames() noexcept { return &fields_; }

const char* MsdaPluginCreator::getPluginName() const noexcept { return form_.name; }

const char* MsdaPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }

const char* MsdaPluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }

}  // namespace trt
}  // namespace detrt
