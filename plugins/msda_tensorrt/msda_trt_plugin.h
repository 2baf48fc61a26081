// TensorRT IPluginV3 plugins over the CUDA entries of detrt_msda.h (README.md, "TensorRT plugin"):
//   DetrtMultiscaleDeformableAttn       value, spatial_shapes, level_start_index, sampling_locations,
//                                       attention_weights
//   DetrtMultiscaleDeformableAttnFused  value, spatial_shapes, level_start_index, reference_points,
//                                       sampling_offsets, attention_logits
// Both are one class (MsdaPlugin) and one creator (MsdaPluginCreator) driven by a PluginForm. With the
// points_per_level field the samples are laid out (N, Lq, M, T, ...) instead of (N, Lq, M, L, P, ...):
// the per-level forms of the same two plugins.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <optional>
#include <string>

#include "detrt_msda.h"

namespace detrt {
namespace trt {

constexpr const char* kPluginVersion = "1";
constexpr const char* kPluginNamespace = "detrt";
constexpr const char* kSpatialShapesField = "spatial_shapes";
constexpr const char* kPointsPerLevelField = "points_per_level";
constexpr const char* kMethodField = "method";
constexpr int kMaxFields = 3;
constexpr int kMaxInputs = 6;

// One extent of one input: input index and axis.
struct Axis {
  int input;
  int axis;
};

// An extent that several inputs carry; every known value must agree.
struct SharedExtent {
  const char* name;
  Axis axes[4];
  int count;
  bool positive;  // at least 1 (N and Lq may be 0)
};

// kPoints is P in the uniform forms and T (the samples per head) in the per-level forms.
enum Extent { kBatch, kQueries, kHeads, kLevels, kPoints, kExtents };

// The inputs of one plugin and how their extents relate. Inputs 0..2 are value, spatial_shapes
// and level_start_index in both forms; input 3 carries Lq on axis 1 in both.
struct PluginForm {
  const char* name;
  bool fused;
  int num_inputs;
  const char* input_names[kMaxInputs];
  int ranks[kMaxInputs];
  SharedExtent extents[kExtents];
  Axis pairs;      // must be 2: the (x, y) axis of locations or offsets
  Axis reference;  // fused: reference_points' last axis, 2 or 4 (input -1 when absent)
  Axis logits;     // fused: attention_logits' last axis, L*P (input -1 when absent or part of kPoints)
};

extern const PluginForm kPlainForm;
extern const PluginForm kFusedForm;
extern const PluginForm kPlainPerLevelForm;
extern const PluginForm kFusedPerLevelForm;

// The per-level form of kPlainForm or kFusedForm (same plugin name, samples (N, Lq, M, T, ...)).
const PluginForm& per_level_form(const PluginForm& form);

// The level table of the "spatial_shapes" attribute: (H_l, W_l) rows and their prefix sums.
struct LevelTable {
  int32_t levels = 0;
  int32_t shapes[2 * DETRT_MSDA_MAX_LEVELS] = {};
  int32_t starts[DETRT_MSDA_MAX_LEVELS] = {};
  int64_t total = 0;  // S = sum of H_l * W_l
};

// What the creator's fields say: the level table ("spatial_shapes"), the per-level point counts
// ("points_per_level"; point_levels 0 when absent: one count P read from the input shapes) and the
// sampling method ("method").
struct PluginAttributes {
  std::optional<LevelTable> table;
  int32_t point_levels = 0;
  int32_t points[DETRT_MSDA_MAX_LEVELS] = {};
  int64_t total_points = 0;  // T = sum of points
  int32_t method = DETRT_MSDA_BILINEAR;
};

// printf into a std::string.
std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));

// Logs `message` as an error through the logger of the ILoggerFinder given to setLoggerFinder
// (stderr when there is none) and reports it to `recorder` when one is given.
void report_error(const char* message, nvinfer1::IErrorRecorder* recorder = nullptr,
                  nvinfer1::ErrorCode code = nvinfer1::ErrorCode::kINVALID_ARGUMENT) noexcept;

// Reads the creator's fields into `attributes` (defaults for absent fields). Returns false with
// `error` naming the offending field when a field is unknown, repeated, malformed or disagrees with
// another field.
bool parse_fields(const nvinfer1::PluginFieldCollection* fields, PluginAttributes& attributes, std::string& error);

// Checks the input dims against `form` (ranks, shared extents, fixed axes, the attributes' level
// table and point counts); extents below 0 are unknown and skipped. Returns an empty string when consistent.
std::string check_inputs(const PluginForm& form, const nvinfer1::Dims* dims, int32_t count,
                         const PluginAttributes& attributes);

// Checks the input types: value float32 or float16, the index inputs int32, every other float
// input the type of value. Returns an empty string when they fit.
std::string check_types(const PluginForm& form, const nvinfer1::DataType* types, int32_t count);

class MsdaPlugin : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  // `form` is the creator's (uniform) form; with points_per_level the plugin takes its per-level form.
  MsdaPlugin(const PluginForm& form, std::string layer, PluginAttributes attributes);
  MsdaPlugin(const MsdaPlugin&) = default;
  MsdaPlugin& operator=(const MsdaPlugin&) = delete;
  ~MsdaPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  const char* getPluginName() const noexcept override;
  const char* getPluginVersion() const noexcept override;
  const char* getPluginNamespace() const noexcept override;

  // IPluginV3OneBuild
  int32_t configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                          const nvinfer1::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, const nvinfer1::DataType* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs, const nvinfer1::DimsExprs* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(const nvinfer1::PluginTensorDesc* in, int32_t nbInputs, const nvinfer1::PluginTensorDesc* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                  const void* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override;

 private:
  // Reports `message` (prefixed with the plugin and layer names) and returns 1.
  int32_t fail(const char* message, nvinfer1::ErrorCode code = nvinfer1::ErrorCode::kINVALID_ARGUMENT) const noexcept;
  // Copies spatial_shapes and level_start_index (device, int32) into the host buffers and waits.
  // Returns an empty string on success.
  std::string copy_level_table(const void* shapes, const void* starts, int64_t levels, cudaStream_t stream);

  const PluginForm* form_;
  std::string layer_;
  PluginAttributes attributes_;
  nvinfer1::IErrorRecorder* recorder_ = nullptr;  // the execution context's, after attachToContext
  int32_t host_shapes_[2 * DETRT_MSDA_MAX_LEVELS] = {};
  int32_t host_starts_[DETRT_MSDA_MAX_LEVELS] = {};
  nvinfer1::PluginField serialized_fields_[kMaxFields];
  nvinfer1::PluginFieldCollection serialized_{};
};

class MsdaPluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  explicit MsdaPluginCreator(const PluginForm& form);

  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override;
  const char* getPluginName() const noexcept override;
  const char* getPluginVersion() const noexcept override;
  const char* getPluginNamespace() const noexcept override;

 private:
  const PluginForm& form_;
  nvinfer1::PluginField field_names_[kMaxFields];
  nvinfer1::PluginFieldCollection fields_{};
};

}  // namespace trt
}  // namespace detrt
