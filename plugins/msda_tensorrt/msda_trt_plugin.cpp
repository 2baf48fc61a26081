// MsdaPlugin: the IPluginV3 interfaces of both MSDA plugins (see msda_trt_plugin.h).
#include "msda_trt_plugin.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <exception>
#include <new>
#include <utility>

namespace detrt {
namespace trt {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::ErrorCode;

const PluginForm kPlainForm = {
    "DetrtMultiscaleDeformableAttn",
    false,
    5,
    {"value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights", nullptr},
    {4, 2, 1, 6, 5, 0},
    {{"N (batch)", {{0, 0}, {3, 0}, {4, 0}}, 3, false},
     {"Lq (queries)", {{3, 1}, {4, 1}}, 2, false},
     {"M (heads)", {{0, 2}, {3, 2}, {4, 2}}, 3, true},
     {"L (levels)", {{1, 0}, {2, 0}, {3, 3}, {4, 3}}, 4, true},
     {"P (points)", {{3, 4}, {4, 4}}, 2, true}},
    {3, 5},
    {-1, 0},
    {-1, 0},
};

const PluginForm kFusedForm = {
    "DetrtMultiscaleDeformableAttnFused",
    true,
    6,
    {"value", "spatial_shapes", "level_start_index", "reference_points", "sampling_offsets", "attention_logits"},
    {4, 2, 1, 4, 6, 4},
    {{"N (batch)", {{0, 0}, {3, 0}, {4, 0}, {5, 0}}, 4, false},
     {"Lq (queries)", {{3, 1}, {4, 1}, {5, 1}}, 3, false},
     {"M (heads)", {{0, 2}, {4, 2}, {5, 2}}, 3, true},
     {"L (levels)", {{1, 0}, {2, 0}, {3, 2}, {4, 3}}, 4, true},
     {"P (points)", {{4, 4}}, 1, true}},
    {4, 5},
    {3, 3},
    {5, 3},
};

// With points_per_level: locations or offsets (N, Lq, M, T, 2), weights or logits (N, Lq, M, T).
const PluginForm kPlainPerLevelForm = {
    "DetrtMultiscaleDeformableAttn",
    false,
    5,
    {"value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights", nullptr},
    {4, 2, 1, 5, 4, 0},
    {{"N (batch)", {{0, 0}, {3, 0}, {4, 0}}, 3, false},
     {"Lq (queries)", {{3, 1}, {4, 1}}, 2, false},
     {"M (heads)", {{0, 2}, {3, 2}, {4, 2}}, 3, true},
     {"L (levels)", {{1, 0}, {2, 0}}, 2, true},
     {"T (samples per head)", {{3, 3}, {4, 3}}, 2, true}},
    {3, 4},
    {-1, 0},
    {-1, 0},
};

const PluginForm kFusedPerLevelForm = {
    "DetrtMultiscaleDeformableAttnFused",
    true,
    6,
    {"value", "spatial_shapes", "level_start_index", "reference_points", "sampling_offsets", "attention_logits"},
    {4, 2, 1, 4, 5, 4},
    {{"N (batch)", {{0, 0}, {3, 0}, {4, 0}, {5, 0}}, 4, false},
     {"Lq (queries)", {{3, 1}, {4, 1}, {5, 1}}, 3, false},
     {"M (heads)", {{0, 2}, {4, 2}, {5, 2}}, 3, true},
     {"L (levels)", {{1, 0}, {2, 0}, {3, 2}}, 3, true},
     {"T (samples per head)", {{4, 3}, {5, 3}}, 2, true}},
    {4, 4},
    {3, 3},
    {-1, 0},
};

const PluginForm& per_level_form(const PluginForm& form) { return form.fused ? kFusedPerLevelForm : kPlainPerLevelForm; }

namespace {

const char* type_name(DataType type) {
  switch (type) {
    case DataType::kFLOAT:
      return "float32";
    case DataType::kHALF:
      return "float16";
    case DataType::kINT32:
      return "int32";
    case DataType::kINT64:
      return "int64";
    default:
      return "an unsupported type";
  }
}

bool is_index_input(int input) { return input == 1 || input == 2; }

// Inputs from here on are the float tensors besides value (both forms).
constexpr int kFirstSampleInput = 3;

// "input 3 (sampling_locations) axis 5".
std::string where(const PluginForm& form, Axis a) {
  return format("input %d (%s) axis %d", a.input, form.input_names[a.input], a.axis);
}

// "<method>: expects 5 inputs and 1 output, got 4 and 1", or an empty string when the counts fit.
std::string count_error(const PluginForm& form, const char* method, bool arrays, int32_t inputs, int32_t outputs) {
  if (arrays && inputs == form.num_inputs && outputs == 1) {
    return {};
  }
  return format("%s: expects %d inputs and 1 output, got %d and %d%s", method, form.num_inputs, inputs, outputs,
                arrays ? "" : " (null arrays)");
}

// Copies dims[0..count) of TensorRT descriptors into `out`.
template <typename Desc, typename GetDims>
void gather_dims(const Desc* descs, int32_t count, Dims* out, GetDims get) {
  for (int32_t i = 0; i < std::min(count, kMaxInputs); ++i) {
    out[i] = get(descs[i]);
  }
}

}  // namespace

// The attributes against the input extents: L and S against the level table, L and T against the
// point counts. Returns an empty string when they agree (or the extents are not known yet).
std::string check_attributes(const PluginForm& form, const PluginAttributes& attributes, long long levels,
                             long long num_values, long long samples) {
  const std::optional<LevelTable>& table = attributes.table;
  if (table && levels >= 0 && levels != table->levels) {
    return format("the spatial_shapes attribute has %d levels but the inputs have L = %lld", table->levels, levels);
  }
  if (table && num_values >= 0 && num_values != table->total) {
    return format("the spatial_shapes attribute covers sum(H*W) = %lld values but value has S = %lld",
                  static_cast<long long>(table->total), num_values);
  }
  if (attributes.point_levels > 0 && levels >= 0 && levels != attributes.point_levels) {
    return format("the %s attribute has %d entries but the inputs have L = %lld levels", kPointsPerLevelField,
                  attributes.point_levels, levels);
  }
  if (attributes.point_levels > 0 && samples >= 0 && samples != attributes.total_points) {
    return format("the %s attribute sums to %lld samples but %s is T = %lld", kPointsPerLevelField,
                  static_cast<long long>(attributes.total_points), where(form, form.extents[kPoints].axes[0]).c_str(),
                  samples);
  }
  return {};
}

std::string check_inputs(const PluginForm& form, const Dims* dims, int32_t count, const PluginAttributes& attributes) {
  if (count != form.num_inputs) {
    return format("expects %d inputs, got %d", form.num_inputs, count);
  }
  for (int i = 0; i < form.num_inputs; ++i) {
    if (dims[i].nbDims != form.ranks[i]) {
      return format("input %d (%s) must have rank %d, got %d", i, form.input_names[i], form.ranks[i], dims[i].nbDims);
    }
  }
  const auto extent = [&](Axis a) { return static_cast<long long>(dims[a.input].d[a.axis]); };
  long long known[kExtents];
  for (int e = 0; e < kExtents; ++e) {
    const SharedExtent& shared = form.extents[e];
    known[e] = -1;
    Axis first{};
    for (int k = 0; k < shared.count; ++k) {
      const long long value = extent(shared.axes[k]);
      if (value < 0) {
        continue;
      }
      if (known[e] < 0) {
        known[e] = value;
        first = shared.axes[k];
      } else if (value != known[e]) {
        return format("%s differs: %s is %lld but %s is %lld", shared.name, where(form, first).c_str(), known[e],
                      where(form, shared.axes[k]).c_str(), value);
      }
    }
    if (shared.positive && known[e] == 0) {
      return format("%s must be at least 1, got 0", shared.name);
    }
  }
  const long long num_values = dims[0].d[1];
  const long long head_dim = dims[0].d[3];
  if (num_values == 0 || head_dim == 0) {
    return format("value (N, S, M, D) must have S and D of at least 1, got S = %lld, D = %lld", num_values, head_dim);
  }
  const long long levels = known[kLevels];
  if (levels > DETRT_MSDA_MAX_LEVELS) {
    return format("L (levels) = %lld exceeds the %d levels the kernels support", levels, DETRT_MSDA_MAX_LEVELS);
  }
  if (extent(Axis{1, 1}) >= 0 && extent(Axis{1, 1}) != 2) {
    return format("spatial_shapes must be (L, 2), got (%lld, %lld)", levels, extent(Axis{1, 1}));
  }
  if (extent(form.pairs) >= 0 && extent(form.pairs) != 2) {
    return format("%s must be 2 (x, y), got %lld", where(form, form.pairs).c_str(), extent(form.pairs));
  }
  if (form.reference.input >= 0 && extent(form.reference) >= 0 && extent(form.reference) != 2 &&
      extent(form.reference) != 4) {
    return format("%s must be 2 (x, y) or 4 (cx, cy, w, h), got %lld", where(form, form.reference).c_str(),
                  extent(form.reference));
  }
  const long long points = known[kPoints];
  if (form.logits.input >= 0 && extent(form.logits) >= 0 && levels >= 0 && points >= 0 &&
      extent(form.logits) != levels * points) {
    return format("%s must be L*P = %lld*%lld = %lld, got %lld", where(form, form.logits).c_str(), levels, points,
                  levels * points, extent(form.logits));
  }
  return check_attributes(form, attributes, levels, num_values, points);
}

// A float input after the level table (locations or reference points, weights, offsets, logits) has
// the type of the first of them, which is value's type or, with a float16 value, float32.
bool sample_type_ok(DataType value, DataType first_sample, DataType type) {
  const bool first_ok = first_sample == value || (value == DataType::kHALF && first_sample == DataType::kFLOAT);
  return first_ok && type == first_sample;
}

std::string check_types(const PluginForm& form, const DataType* types, int32_t count) {
  if (count != form.num_inputs) {
    return format("expects %d inputs, got %d", form.num_inputs, count);
  }
  if (types[0] != DataType::kFLOAT && types[0] != DataType::kHALF) {
    return format("value must be float32 or float16, got %s", type_name(types[0]));
  }
  for (int i = 1; i < form.num_inputs; ++i) {
    if (is_index_input(i) && types[i] != DataType::kINT32) {
      return format("%s must be int32 (cast it in the graph), got %s", form.input_names[i], type_name(types[i]));
    }
    if (!is_index_input(i) && !sample_type_ok(types[0], types[kFirstSampleInput], types[i])) {
      return format("%s must have the type of value (%s), or float32 with a float16 value like every other float "
                    "input; got %s with %s %s",
                    form.input_names[i], type_name(types[0]), type_name(types[i]),
                    form.input_names[kFirstSampleInput], type_name(types[kFirstSampleInput]));
    }
  }
  return {};
}

MsdaPlugin::MsdaPlugin(const PluginForm& form, std::string layer, PluginAttributes attributes)
    : form_(attributes.point_levels > 0 ? &per_level_form(form) : &form),
      layer_(std::move(layer)),
      attributes_(std::move(attributes)) {}

nvinfer1::IPluginCapability* MsdaPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE:
      return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD:
      return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME:
      return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* MsdaPlugin::clone() noexcept {
  try {
    return new MsdaPlugin(*this);
  } catch (const std::exception& error) {
    fail(error.what(), ErrorCode::kINTERNAL_ERROR);
    return nullptr;
  }
}

const char* MsdaPlugin::getPluginName() const noexcept { return form_->name; }

const char* MsdaPlugin::getPluginVersion() const noexcept { return kPluginVersion; }

const char* MsdaPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t MsdaPlugin::configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                                    const nvinfer1::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept {
  try {
    const std::string counts = count_error(*form_, "configurePlugin", in != nullptr && out != nullptr, nbInputs,
                                           nbOutputs);
    if (!counts.empty()) {
      return fail(counts.c_str());
    }
    Dims dims[kMaxInputs];
    gather_dims(in, nbInputs, dims, [](const nvinfer1::DynamicPluginTensorDesc& d) { return d.desc.dims; });
    const std::string error = check_inputs(*form_, dims, nbInputs, attributes_);
    if (!error.empty()) {
      return fail(error.c_str());
    }
    return out[0].desc.dims.nbDims == 3 ? 0 : fail("the output must have rank 3 (N, Lq, M*D)");
  } catch (const std::exception& error) {
    return fail(error.what(), ErrorCode::kINTERNAL_ERROR);
  }
}

int32_t MsdaPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, const DataType* inputTypes,
                                       int32_t nbInputs) const noexcept {
  try {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1) {
      return fail(format("getOutputDataTypes: expects 1 output, got %d", nbOutputs).c_str());
    }
    const std::string error = check_types(*form_, inputTypes, nbInputs);
    if (!error.empty()) {
      return fail(error.c_str());
    }
    outputTypes[0] = inputTypes[0];
    return 0;
  } catch (const std::exception& error) {
    return fail(error.what(), ErrorCode::kINTERNAL_ERROR);
  }
}

int32_t MsdaPlugin::getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                    const nvinfer1::DimsExprs* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                    nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                    nvinfer1::IExprBuilder& exprBuilder) noexcept {
  try {
    const std::string counts = count_error(*form_, "getOutputShapes", inputs != nullptr && outputs != nullptr, nbInputs,
                                           nbOutputs);
    if (!counts.empty()) {
      return fail(counts.c_str());
    }
    // Build-time constants only; the others are checked once known (onShapeChange, enqueue).
    Dims dims[kMaxInputs];
    gather_dims(inputs, nbInputs, dims, [](const nvinfer1::DimsExprs& e) {
      Dims d{};
      d.nbDims = e.nbDims;
      for (int32_t a = 0; a < std::min(std::max(e.nbDims, 0), Dims::MAX_DIMS); ++a) {
        d.d[a] = e.d[a] != nullptr && e.d[a]->isConstant() ? e.d[a]->getConstantValue() : -1;
      }
      return d;
    });
    const std::string error = check_inputs(*form_, dims, nbInputs, attributes_);
    if (!error.empty()) {
      return fail(error.c_str());
    }
    const nvinfer1::IDimensionExpr* channels =
        exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[2], *inputs[0].d[3]);
    if (channels == nullptr) {
      return fail("could not build the output extent M*D", ErrorCode::kINTERNAL_ERROR);
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[3].d[1];
    outputs[0].d[2] = channels;
    return 0;
  } catch (const std::exception& error) {
    return fail(error.what(), ErrorCode::kINTERNAL_ERROR);
  }
}

bool MsdaPlugin::supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut,
                                           int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (inOut == nullptr || nbInputs != form_->num_inputs || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) {
    return false;
  }
  const nvinfer1::PluginTensorDesc& desc = inOut[pos].desc;
  if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
    return false;
  }
  if (is_index_input(pos)) {
    return desc.type == DataType::kINT32;
  }
  if (pos == 0) {
    return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
  }
  if (pos == nbInputs) {
    return desc.type == inOut[0].desc.type;  // the output has value's type
  }
  return sample_type_ok(inOut[0].desc.type, inOut[kFirstSampleInput].desc.type, desc.type);
}

int32_t MsdaPlugin::getNbOutputs() const noexcept { return 1; }

int32_t MsdaPlugin::onShapeChange(const nvinfer1::PluginTensorDesc* in, int32_t nbInputs,
                                  const nvinfer1::PluginTensorDesc* out, int32_t nbOutputs) noexcept {
  try {
    const std::string counts = count_error(*form_, "onShapeChange", in != nullptr && out != nullptr, nbInputs,
                                           nbOutputs);
    if (!counts.empty()) {
      return fail(counts.c_str());
    }
    Dims dims[kMaxInputs];
    gather_dims(in, nbInputs, dims, [](const nvinfer1::PluginTensorDesc& d) { return d.dims; });
    const std::string error = check_inputs(*form_, dims, nbInputs, attributes_);
    return error.empty() ? 0 : fail(error.c_str());
  } catch (const std::exception& error) {
    return fail(error.what(), ErrorCode::kINTERNAL_ERROR);
  }
}

int32_t MsdaPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                            const void* const* inputs, void* const* outputs, void* /*workspace*/,
                            cudaStream_t stream) noexcept {
  try {
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
      return fail("enqueue: null descriptors or tensor arrays");
    }
    const int count = form_->num_inputs;
    Dims dims[kMaxInputs];
    DataType types[kMaxInputs];
    for (int i = 0; i < count; ++i) {
      dims[i] = inputDesc[i].dims;
      types[i] = inputDesc[i].type;
    }
    std::string error = check_types(*form_, types, count);
    if (error.empty()) {
      error = check_inputs(*form_, dims, count, attributes_);
    }
    if (!error.empty()) {
      return fail(error.c_str());
    }
    const int64_t levels = dims[1].d[0];
    const int32_t* shapes = nullptr;
    const int32_t* starts = nullptr;
    if (attributes_.table) {
      shapes = attributes_.table->shapes;
      starts = attributes_.table->starts;
    } else {
      error = copy_level_table(inputs[1], inputs[2], levels, stream);
      if (!error.empty()) {
        return fail(error.c_str(), ErrorCode::kFAILED_EXECUTION);
      }
      shapes = host_shapes_;
      starts = host_starts_;
    }
    const Axis points = form_->extents[kPoints].axes[0];
    const detrt_msda_problem problem{dims[0].d[0],
                                     dims[0].d[1],
                                     dims[0].d[2],
                                     dims[0].d[3],
                                     dims[3].d[1],
                                     levels,
                                     dims[points.input].d[points.axis],
                                     types[0] == DataType::kFLOAT               ? DETRT_MSDA_FLOAT32
                                     : types[kFirstSampleInput] == DataType::kHALF ? DETRT_MSDA_FLOAT16
                                                                                   : DETRT_MSDA_FLOAT16_FLOAT32,
                                     DETRT_MSDA_INT32,
                                     shapes,
                                     starts,
                                     attributes_.point_levels > 0 ? attributes_.points : nullptr,
                                     attributes_.method};
    const detrt_msda_status status =
        form_->fused ? detrt_msda_fused_forward_cuda(&problem, inputs[0], inputs[3], static_cast<int>(dims[3].d[3]),
                                                     inputs[4], inputs[5], outputs[0], stream)
                     : detrt_msda_forward_cuda(&problem, inputs[0], inputs[3], inputs[4], outputs[0], stream);
    if (status != DETRT_MSDA_SUCCESS) {
      return fail(format("the kernel library returned status %d: %s", static_cast<int>(status),
                         detrt_msda_error_string(status))
                      .c_str(),
                  status == DETRT_MSDA_ERROR_CUDA ? ErrorCode::kFAILED_EXECUTION : ErrorCode::kINVALID_ARGUMENT);
    }
    return 0;
  } catch (const std::exception& error) {
    return fail(error.what(), ErrorCode::kINTERNAL_ERROR);
  }
}

std::string MsdaPlugin::copy_level_table(const void* shapes, const void* starts, int64_t levels,
                                         cudaStream_t stream) {
  // Not capturable: the copy must finish on the host before the kernel's parameters are built.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaError_t result = cudaStreamIsCapturing(stream, &capture);
  if (result == cudaSuccess && capture != cudaStreamCaptureStatusNone) {
    return "cannot read spatial_shapes and level_start_index from the device while the stream is captured into a "
           "CUDA graph; give the node the spatial_shapes attribute (H0, W0, H1, W1, ...)";
  }
  if (result == cudaSuccess) {
    result = cudaMemcpyAsync(host_shapes_, shapes, 2 * levels * sizeof(int32_t), cudaMemcpyDeviceToHost, stream);
  }
  if (result == cudaSuccess) {
    result = cudaMemcpyAsync(host_starts_, starts, levels * sizeof(int32_t), cudaMemcpyDeviceToHost, stream);
  }
  if (result == cudaSuccess) {
    result = cudaStreamSynchronize(stream);
  }
  if (result != cudaSuccess) {
    return format("copying spatial_shapes and level_start_index to the host failed: %s", cudaGetErrorString(result));
  }
  return {};
}

nvinfer1::IPluginV3* MsdaPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept {
  try {
    auto* plugin = new MsdaPlugin(*this);
    plugin->recorder_ = context != nullptr ? context->getErrorRecorder() : nullptr;
    return plugin;
  } catch (const std::exception& error) {
    fail(error.what(), ErrorCode::kINTERNAL_ERROR);
    return nullptr;
  }
}

// The fields that were given (a bilinear method is the default and is left out); "method" as the
// string's bytes, as the ONNX parser passes a STRING attribute.
const nvinfer1::PluginFieldCollection* MsdaPlugin::getFieldsToSerialize() noexcept {
  int32_t count = 0;
  if (attributes_.table) {
    serialized_fields_[count++] = nvinfer1::PluginField(kSpatialShapesField, attributes_.table->shapes,
                                                        nvinfer1::PluginFieldType::kINT32, 2 * attributes_.table->levels);
  }
  if (attributes_.point_levels > 0) {
    serialized_fields_[count++] = nvinfer1::PluginField(kPointsPerLevelField, attributes_.points,
                                                        nvinfer1::PluginFieldType::kINT32, attributes_.point_levels);
  }
  if (attributes_.method == DETRT_MSDA_DISCRETE) {
    static const char kDiscrete[] = "discrete";
    serialized_fields_[count++] = nvinfer1::PluginField(kMethodField, kDiscrete, nvinfer1::PluginFieldType::kCHAR,
                                                        static_cast<int32_t>(sizeof kDiscrete - 1));
  }
  serialized_.nbFields = count;
  serialized_.fields = serialized_fields_;
  return &serialized_;
}

int32_t MsdaPlugin::fail(const char* message, ErrorCode code) const noexcept {
  try {
    report_error(format("%s (layer '%s'): %s", form_->name, layer_.c_str(), message).c_str(), recorder_, code);
  } catch (const std::exception&) {
    report_error(message, recorder_, code);
  }
  return 1;
}

}  // namespace trt
}  // namespace detrt
