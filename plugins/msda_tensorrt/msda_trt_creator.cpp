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

// Fills the point counts from a "points_per_level" field; returns an error message or an empty string.
std::string parse_points_per_level(const nvinfer1::PluginField& field, PluginAttributes& attributes) {
  if (field.type != nvinfer1::PluginFieldType::kINT32 && field.type != nvinfer1::PluginFieldType::kINT64) {
    return format("field '%s' must be an INT32 or INT64 array, got PluginFieldType %d", kPointsPerLevelField,
                  static_cast<int>(field.type));
  }
  if (field.length < 1 || field.length > DETRT_MSDA_MAX_LEVELS) {
    return format("field '%s' must hold one point count per level, 1 to %d entries, got length %d",
                  kPointsPerLevelField, DETRT_MSDA_MAX_LEVELS, field.length);
  }
  if (field.data == nullptr) {
    return format("field '%s' has length %d but no data", kPointsPerLevelField, field.length);
  }
  attributes.point_levels = field.length;
  attributes.total_points = 0;
  for (int32_t l = 0; l < field.length; ++l) {
    const int64_t points = field_value(field, l);
    if (points < 1 || points > kIntMax) {
      return format("field '%s': level %d has %lld points; every count must be at least 1", kPointsPerLevelField, l,
                    static_cast<long long>(points));
    }
    attributes.points[l] = static_cast<int32_t>(points);
    attributes.total_points += points;
  }
  return attributes.total_points > kIntMax
             ? format("field '%s': the counts sum to %lld, more than 2^31 - 1", kPointsPerLevelField,
                      static_cast<long long>(attributes.total_points))
             : std::string();
}

// Reads a "method" field: the bytes of "bilinear" or "discrete" (kCHAR, with or without a terminating
// NUL), or INT32 0 or 1 (detrt_msda_method). Returns an error message or an empty string.
std::string parse_method(const nvinfer1::PluginField& field, PluginAttributes& attributes) {
  if (field.data == nullptr || field.length < 1) {
    return format("field '%s' is empty (length %d)", kMethodField, field.length);
  }
  if (field.type == nvinfer1::PluginFieldType::kINT32 && field.length == 1) {
    const int64_t code = field_value(field, 0);
    if (code == DETRT_MSDA_BILINEAR || code == DETRT_MSDA_DISCRETE) {
      attributes.method = static_cast<int32_t>(code);
      return {};
    }
    return format("field '%s' must be 0 (bilinear) or 1 (discrete), got %lld", kMethodField,
                  static_cast<long long>(code));
  }
  if (field.type != nvinfer1::PluginFieldType::kCHAR) {
    return format("field '%s' must be the string \"bilinear\" or \"discrete\" (CHAR) or INT32 0 or 1, got "
                  "PluginFieldType %d of length %d",
                  kMethodField, static_cast<int>(field.type), field.length);
  }
  std::string text(static_cast<const char*>(field.data), static_cast<size_t>(field.length));
  text.erase(text.find_last_not_of('\0') + 1);
  if (text == "bilinear" || text == "discrete") {
    attributes.method = text == "bilinear" ? DETRT_MSDA_BILINEAR : DETRT_MSDA_DISCRETE;
    return {};
  }
  return format("field '%s' must be \"bilinear\" or \"discrete\", got \"%.32s\"", kMethodField, text.c_str());
}

// The field names in order, and the parser of each.
constexpr const char* kFieldNames[kMaxFields] = {kSpatialShapesField, kPointsPerLevelField, kMethodField};

std::string parse_field(int index, const nvinfer1::PluginField& field, PluginAttributes& attributes) {
  if (index == 0) {
    LevelTable table;
    const std::string error = parse_spatial_shapes(field, table);
    if (error.empty()) {
      attributes.table = table;
    }
    return error;
  }
  return index == 1 ? parse_points_per_level(field, attributes) : parse_method(field, attributes);
}

// The index of `name` in kFieldNames, or -1. strncmp reads no further than a known name and its terminator.
int field_index(const char* name) {
  for (int i = 0; i < kMaxFields; ++i) {
    if (std::strncmp(name, kFieldNames[i], std::strlen(kFieldNames[i]) + 1) == 0) {
      return i;
    }
  }
  return -1;
}

}  // namespace

bool parse_fields(const nvinfer1::PluginFieldCollection* fields, PluginAttributes& attributes, std::string& error) {
  attributes = PluginAttributes{};
  if (fields == nullptr || fields->nbFields == 0) {
    return true;
  }
  if (fields->nbFields < 0 || fields->fields == nullptr) {
    error = format("malformed PluginFieldCollection (nbFields %d, fields %s)", fields->nbFields,
                   fields->fields == nullptr ? "null" : "set");
    return false;
  }
  bool seen[kMaxFields] = {};
  for (int32_t i = 0; i < fields->nbFields; ++i) {
    const nvinfer1::PluginField& field = fields->fields[i];
    if (field.name == nullptr) {
      error = format("field %d has no name", i);
      return false;
    }
    const int index = field_index(field.name);
    if (index < 0) {
      error = format("unknown field '%.64s' (the fields are '%s', '%s' and '%s')", field.name, kSpatialShapesField,
                     kPointsPerLevelField, kMethodField);
      return false;
    }
    if (seen[index]) {
      error = format("field '%s' is given more than once", kFieldNames[index]);
      return false;
    }
    seen[index] = true;
    error = parse_field(index, field, attributes);
    if (!error.empty()) {
      return false;
    }
  }
  if (attributes.table && attributes.point_levels > 0 && attributes.table->levels != attributes.point_levels) {
    error = format("field '%s' has %d entries but field '%s' has %d levels", kPointsPerLevelField,
                   attributes.point_levels, kSpatialShapesField, attributes.table->levels);
    return false;
  }
  return true;
}

MsdaPluginCreator::MsdaPluginCreator(const PluginForm& form)
    : form_(form),
      field_names_{nvinfer1::PluginField(kSpatialShapesField, nullptr, nvinfer1::PluginFieldType::kINT32, 0),
                   nvinfer1::PluginField(kPointsPerLevelField, nullptr, nvinfer1::PluginFieldType::kINT32, 0),
                   nvinfer1::PluginField(kMethodField, nullptr, nvinfer1::PluginFieldType::kCHAR, 0)} {
  fields_.nbFields = kMaxFields;
  fields_.fields = field_names_;
}

nvinfer1::IPluginV3* MsdaPluginCreator::createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                                     nvinfer1::TensorRTPhase /*phase*/) noexcept {
  try {
    const std::string layer = name != nullptr ? name : "";
    PluginAttributes attributes;
    std::string error;
    if (!parse_fields(fc, attributes, error)) {
      report_error(format("%s (layer '%s'): %s; plugin not created", form_.name, layer.c_str(), error.c_str()).c_str());
      return nullptr;
    }
    return new MsdaPlugin(form_, layer, attributes);
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
