// Host-only check of libdetrt_trt_plugins, loaded the way TensorRT loads it (dlopen, getCreators,
// setLoggerFinder): both creators, field validation and the serialisation round trip, and the
// build/runtime shape logic driven with stand-ins for TensorRT's expression builder, logger, error
// recorder and resource context. Needs neither a GPU nor libnvinfer.
//
// Usage: detrt_msda_trt_fields_test <path of libdetrt_trt_plugins.so>
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace nvinfer1;

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// Collects the errors the plugins log.
class Logger : public ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kERROR) {
      errors_ += message;
      errors_ += '\n';
    }
  }
  // The errors logged since the last call.
  std::string take() {
    std::string errors;
    errors.swap(errors_);
    return errors;
  }

 private:
  std::string errors_;
};

class Finder : public ILoggerFinder {
 public:
  ILogger* findLogger() override { return &logger; }
  Logger logger;
};

class Recorder : public IErrorRecorder {
 public:
  int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(errors_.size()); }
  ErrorCode getErrorCode(int32_t i) const noexcept override { return errors_[i].first; }
  ErrorDesc getErrorDesc(int32_t i) const noexcept override { return errors_[i].second.c_str(); }
  bool hasOverflowed() const noexcept override { return false; }
  void clear() noexcept override { errors_.clear(); }
  bool reportError(ErrorCode code, ErrorDesc desc) noexcept override {
    errors_.emplace_back(code, desc);
    return false;
  }
  RefCount incRefCount() noexcept override { return 1; }
  RefCount decRefCount() noexcept override { return 0; }

 private:
  std::vector<std::pair<ErrorCode, std::string>> errors_;
};

class Context : public IPluginResourceContext {
 public:
  IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  IErrorRecorder* getErrorRecorder() const noexcept override { return recorder; }
  IErrorRecorder* recorder = nullptr;
};

// A dimension expression: a constant, or a runtime extent when value is -1.
class Expr : public IDimensionExpr, public apiv::VDimensionExpr {
 public:
  explicit Expr(int64_t value) : value_(value) { mImpl = this; }
  bool isConstant() const override { return value_ >= 0; }
  int64_t getConstantValue() const override { return value_ >= 0 ? value_ : std::numeric_limits<int64_t>::min(); }
  bool isSizeTensor() const override { return false; }

 private:
  int64_t value_;
};

class ExprBuilder : public IExprBuilder, public apiv::VExprBuilder {
 public:
  ExprBuilder() { mImpl = this; }
  const IDimensionExpr* constant(int64_t value) override { return make(value); }
  const IDimensionExpr* operation(DimensionOperation op, const IDimensionExpr& a, const IDimensionExpr& b) override {
    if (op != DimensionOperation::kPROD) {
      return nullptr;
    }
    const bool known = a.isConstant() && b.isConstant();
    return make(known ? a.getConstantValue() * b.getConstantValue() : -1);
  }
  const IDimensionExpr* declareSizeTensor(int32_t, const IDimensionExpr&, const IDimensionExpr&) override {
    return nullptr;
  }
  DimsExprs exprs(const Dims& dims) {
    DimsExprs out{};
    out.nbDims = dims.nbDims;
    for (int32_t i = 0; i < dims.nbDims; ++i) {
      out.d[i] = make(dims.d[i]);
    }
    return out;
  }

 private:
  const Expr* make(int64_t value) {
    exprs_.push_back(std::make_unique<Expr>(value));
    return exprs_.back().get();
  }
  std::vector<std::unique_ptr<Expr>> exprs_;
};

Dims dims(std::initializer_list<int64_t> extents) {
  Dims d{};
  for (int64_t e : extents) {
    d.d[d.nbDims++] = e;
  }
  return d;
}

// Deformable DETR R50 at 800x1333: S = 22223.
const int32_t kShapes[] = {100, 167, 50, 84, 25, 42, 13, 21};
constexpr int64_t kLevels = 4, kValues = 22223, kHeads = 8, kDim = 32, kPoints = 4;

// Input dims of either plugin; `levels_at` replaces L on the locations/offsets input.
std::vector<Dims> inputs(bool fused, int64_t n, int64_t q, int64_t levels_at = kLevels, int64_t heads_at = kHeads) {
  const int64_t L = kLevels, M = kHeads, P = kPoints;
  std::vector<Dims> d = {dims({n, kValues, M, kDim}), dims({L, 2}), dims({L})};
  if (fused) {
    d.push_back(dims({n, q, L, 2}));
    d.push_back(dims({n, q, heads_at, levels_at, P, 2}));
    d.push_back(dims({n, q, M, L * P}));
  } else {
    d.push_back(dims({n, q, heads_at, levels_at, P, 2}));
    d.push_back(dims({n, q, M, L, P}));
  }
  return d;
}

std::vector<DynamicPluginTensorDesc> descs(const std::vector<Dims>& in, DataType type, const Dims& out) {
  std::vector<DynamicPluginTensorDesc> all;
  for (size_t i = 0; i <= in.size(); ++i) {
    DynamicPluginTensorDesc d{};
    d.desc.dims = i < in.size() ? in[i] : out;
    d.desc.type = i == 1 || i == 2 ? DataType::kINT32 : type;
    d.desc.format = TensorFormat::kLINEAR;
    d.min = d.max = d.opt = d.desc.dims;
    all.push_back(d);
  }
  return all;
}

std::vector<PluginTensorDesc> runtime_descs(const std::vector<Dims>& in, DataType type, const Dims& out) {
  std::vector<PluginTensorDesc> all;
  for (const DynamicPluginTensorDesc& d : descs(in, type, out)) {
    all.push_back(d.desc);
  }
  return all;
}

struct Plugin {
  IPluginV3* base;
  IPluginV3OneCore* core;
  IPluginV3OneBuild* build;
  IPluginV3OneRuntime* runtime;
};

Plugin interfaces(IPluginV3* plugin) {
  return {plugin, static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE)),
          static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD)),
          static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME))};
}

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<PluginField> fields, int32_t count = -2,
                  TensorRTPhase phase = TensorRTPhase::kBUILD) {
  PluginFieldCollection fc{count == -2 ? static_cast<int32_t>(fields.size()) : count,
                           fields.empty() ? nullptr : fields.data()};
  return creator->createPlugin("layer0", &fc, phase);
}

// What a plugin serialises: each field at most once, INT32 arrays and the method's bytes.
struct Saved {
  std::vector<int32_t> shapes, points;
  std::string method;
  std::vector<PluginField> fields;  // as returned, to create a plugin from
};

Saved saved_fields(IPluginV3OneRuntime* runtime, bool& ok) {
  Saved saved;
  const PluginFieldCollection* fc = runtime->getFieldsToSerialize();
  ok = fc != nullptr && fc->nbFields >= 0 && fc->nbFields <= 3 && (fc->nbFields == 0 || fc->fields != nullptr);
  for (int32_t i = 0; ok && i < fc->nbFields; ++i) {
    const PluginField& f = fc->fields[i];
    saved.fields.push_back(f);
    ok = f.name != nullptr && f.data != nullptr && f.length > 0;
    const std::string name = ok ? f.name : "";
    const auto* values = static_cast<const int32_t*>(f.data);
    if (name == "method" && f.type == PluginFieldType::kCHAR && saved.method.empty()) {
      saved.method.assign(static_cast<const char*>(f.data), static_cast<size_t>(f.length));
    } else if (name == "spatial_shapes" && f.type == PluginFieldType::kINT32 && saved.shapes.empty()) {
      saved.shapes.assign(values, values + f.length);
    } else if (name == "points_per_level" && f.type == PluginFieldType::kINT32 && saved.points.empty()) {
      saved.points.assign(values, values + f.length);
    } else {
      ok = false;
    }
  }
  return saved;
}

// The spatial_shapes a plugin serialises; `ok` false when it serialises anything else.
std::vector<int32_t> serialized_shapes(IPluginV3OneRuntime* runtime, bool& ok) {
  const Saved saved = saved_fields(runtime, ok);
  ok = ok && saved.points.empty() && saved.method.empty();
  return saved.shapes;
}

void check_fields(IPluginCreatorV3One* creator, Logger& logger) {
  const std::string name = creator->getPluginName();
  const std::vector<int32_t> expected(std::begin(kShapes), std::end(kShapes));
  bool ok = false;

  IPluginV3* none = create(creator, {});
  expect(none != nullptr, name + ": created without fields");
  if (none != nullptr) {
    expect(serialized_shapes(interfaces(none).runtime, ok).empty() && ok, name + ": no field to serialise");
    delete none;
  }

  IPluginV3* with = create(creator, {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8)});
  expect(with != nullptr, name + ": created with an INT32 spatial_shapes");
  if (with != nullptr) {
    const std::vector<int32_t> saved = serialized_shapes(interfaces(with).runtime, ok);
    expect(ok && saved == expected, name + ": spatial_shapes serialised as given");
    IPluginV3* restored = create(creator, {PluginField("spatial_shapes", saved.data(), PluginFieldType::kINT32, 8)}, -2,
                                 TensorRTPhase::kRUNTIME);
    expect(restored != nullptr, name + ": deserialised");
    if (restored != nullptr) {
      expect(serialized_shapes(interfaces(restored).runtime, ok) == expected && ok, name + ": round trip");
      delete restored;
    }
    IPluginV3* copy = with->clone();
    expect(copy != nullptr && serialized_shapes(interfaces(copy).runtime, ok) == expected && ok, name + ": clone");
    delete copy;
    delete with;
  }

  const int64_t wide[] = {100, 167, 50, 84, 25, 42, 13, 21};
  IPluginV3* from64 = create(creator, {PluginField("spatial_shapes", wide, PluginFieldType::kINT64, 8)});
  expect(from64 != nullptr, name + ": created with an INT64 spatial_shapes (ONNX INTS through Python)");
  if (from64 != nullptr) {
    expect(serialized_shapes(interfaces(from64).runtime, ok) == expected && ok, name + ": INT64 stored as INT32");
    delete from64;
  }
  expect(logger.take().empty(), name + ": no error for valid fields");

  // Malformed fields: refused, and the message names the field.
  const float floats[] = {100.f, 167.f};
  const int32_t negative[] = {-1, 5}, zero[] = {5, 0}, huge[] = {65536, 65536}, odd[] = {1, 2, 3};
  const int64_t too_wide[] = {int64_t{1} << 40, 1};
  const std::vector<int32_t> seventeen(34, 1);
  struct Bad {
    const char* label;
    std::vector<PluginField> fields;
    int32_t count;
    const char* mention;
  };
  const Bad bad[] = {
      {"unknown name", {PluginField("spatial_shape", kShapes, PluginFieldType::kINT32, 8)}, -2, "'spatial_shape'"},
      {"null name", {PluginField(nullptr, kShapes, PluginFieldType::kINT32, 8)}, -2, "field 0 has no name"},
      {"FLOAT32 type", {PluginField("spatial_shapes", floats, PluginFieldType::kFLOAT32, 2)}, -2, "INT32 or INT64"},
      {"CHAR type", {PluginField("spatial_shapes", "ab", PluginFieldType::kCHAR, 2)}, -2, "INT32 or INT64"},
      {"odd length", {PluginField("spatial_shapes", odd, PluginFieldType::kINT32, 3)}, -2, "length 3"},
      {"empty", {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 0)}, -2, "length 0"},
      {"negative length", {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, -2)}, -2, "length -2"},
      {"17 levels", {PluginField("spatial_shapes", seventeen.data(), PluginFieldType::kINT32, 34)}, -2, "length 34"},
      {"null data", {PluginField("spatial_shapes", nullptr, PluginFieldType::kINT32, 2)}, -2, "no data"},
      {"negative H", {PluginField("spatial_shapes", negative, PluginFieldType::kINT32, 2)}, -2, "(-1, 5)"},
      {"zero W", {PluginField("spatial_shapes", zero, PluginFieldType::kINT32, 2)}, -2, "(5, 0)"},
      {"H*W over 2^31", {PluginField("spatial_shapes", huge, PluginFieldType::kINT32, 2)}, -2, "(65536, 65536)"},
      {"INT64 over 2^31", {PluginField("spatial_shapes", too_wide, PluginFieldType::kINT64, 2)}, -2, "1099511627776"},
      {"given twice",
       {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8),
        PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8)},
       -2,
       "more than once"},
      {"negative nbFields", {}, -1, "nbFields -1"},
      {"fields missing", {}, 1, "fields null"},
  };
  for (const Bad& b : bad) {
    IPluginV3* plugin = create(creator, b.fields, b.count);
    const std::string errors = logger.take();
    expect(plugin == nullptr, name + ": refuses " + b.label);
    expect(errors.find(b.mention) != std::string::npos && errors.find(name) != std::string::npos,
           name + ": " + b.label + " logged with '" + b.mention + "', got: " + errors);
    delete plugin;
  }
}

void check_shapes(IPluginCreatorV3One* creator, bool fused, Logger& logger) {
  const std::string name = creator->getPluginName();
  const int32_t nb = fused ? 6 : 5;
  const Dims out = dims({2, 300, kHeads * kDim});
  IPluginV3* plain_plugin = create(creator, {});
  IPluginV3* attr_plugin = create(creator, {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8)});
  const int32_t three_levels[] = {100, 167, 50, 84, 25, 42};
  IPluginV3* short_plugin = create(creator, {PluginField("spatial_shapes", three_levels, PluginFieldType::kINT32, 6)});
  if (plain_plugin == nullptr || attr_plugin == nullptr || short_plugin == nullptr) {
    expect(false, name + ": plugins for the shape checks");
    return;
  }
  const Plugin p = interfaces(plain_plugin), a = interfaces(attr_plugin), s = interfaces(short_plugin);
  expect(p.core != nullptr && p.build != nullptr && p.runtime != nullptr, name + ": capability interfaces");
  expect(name == p.core->getPluginName() && std::strcmp(p.core->getPluginVersion(), "1") == 0 &&
             std::strcmp(p.core->getPluginNamespace(), "detrt") == 0,
         name + ": core name, version, namespace");
  expect(p.build->getNbOutputs() == 1, name + ": one output");

  // Formats: linear; float inputs share value's type (float32 or float16), or with a float16 value
  // are all float32; the output has value's type; index inputs int32.
  const auto supported = [&](const std::vector<DynamicPluginTensorDesc>& io, int32_t pos) {
    return p.build->supportsFormatCombination(pos, io.data(), nb, 1);
  };
  for (DataType type : {DataType::kFLOAT, DataType::kHALF}) {
    std::vector<DynamicPluginTensorDesc> io = descs(inputs(fused, 2, 300), type, out);
    bool all = true;
    for (int32_t pos = 0; pos <= nb; ++pos) {
      all = all && supported(io, pos);
    }
    expect(all, name + ": supports the linear combination of one float type");
    if (type == DataType::kHALF) {
      for (int32_t pos = 3; pos < nb; ++pos) {
        io[pos].desc.type = DataType::kFLOAT;
      }
      bool mixed = true;
      for (int32_t pos = 0; pos <= nb; ++pos) {
        mixed = mixed && supported(io, pos);
      }
      expect(mixed, name + ": supports a float16 value with float32 locations, weights and references");
      io[nb - 1].desc.type = DataType::kHALF;
      expect(!supported(io, nb - 1), name + ": refuses float inputs of two types after value");
      io[nb].desc.type = DataType::kFLOAT;
      expect(!supported(io, nb), name + ": refuses an output whose type is not value's");
    } else {
      io[3].desc.type = DataType::kHALF;
      expect(!supported(io, 3), name + ": refuses float16 inputs with a float32 value");
    }
    io[1].desc.type = DataType::kINT64;
    expect(!supported(io, 1), name + ": refuses int64 spatial_shapes");
    io[0].desc.format = TensorFormat::kCHW32;
    expect(!p.build->supportsFormatCombination(0, io.data(), nb, 1), name + ": refuses a non-linear format");
  }
  {
    std::vector<DataType> types(nb, DataType::kHALF);
    types[1] = types[2] = DataType::kINT32;
    DataType result = DataType::kFLOAT;
    expect(p.build->getOutputDataTypes(&result, 1, types.data(), nb) == 0 && result == DataType::kHALF,
           name + ": float16 output for float16 inputs");
    types[nb - 1] = DataType::kFLOAT;
    expect(p.build->getOutputDataTypes(&result, 1, types.data(), nb) != 0, name + ": refuses mixed float types");
    expect(logger.take().find("must have the type of value") != std::string::npos, name + ": mixed types logged");
    for (int32_t i = 3; i < nb; ++i) {
      types[i] = DataType::kFLOAT;
    }
    result = DataType::kFLOAT;
    expect(p.build->getOutputDataTypes(&result, 1, types.data(), nb) == 0 && result == DataType::kHALF,
           name + ": float16 output for a float16 value with float32 locations and weights");
    for (int32_t i = 3; i < nb; ++i) {
      types[i] = DataType::kHALF;
    }
    types[2] = DataType::kINT64;
    expect(p.build->getOutputDataTypes(&result, 1, types.data(), nb) != 0, name + ": refuses int64 indices");
    expect(logger.take().find("level_start_index must be int32") != std::string::npos, name + ": int64 logged");
  }

  // getOutputShapes: (N, Lq, M*D), dynamic N and Lq carried through.
  {
    ExprBuilder builder;
    std::vector<DimsExprs> in;
    for (const Dims& d : inputs(fused, -1, -1)) {
      in.push_back(builder.exprs(d));
    }
    DimsExprs result{};
    expect(a.build->getOutputShapes(in.data(), nb, nullptr, 0, &result, 1, builder) == 0, name + ": output shape");
    expect(result.nbDims == 3 && !result.d[0]->isConstant() && !result.d[1]->isConstant() &&
               result.d[2]->isConstant() && result.d[2]->getConstantValue() == kHeads * kDim,
           name + ": output (N, Lq, M*D) with dynamic N and Lq");
    in.clear();
    for (const Dims& d : inputs(fused, 2, 300, kLevels, 4)) {
      in.push_back(builder.exprs(d));
    }
    expect(p.build->getOutputShapes(in.data(), nb, nullptr, 0, &result, 1, builder) != 0, name + ": M mismatch");
    expect(logger.take().find("M (heads) differs") != std::string::npos, name + ": M mismatch logged");
  }

  // configurePlugin: build-time dims with wildcards; onShapeChange: concrete dims.
  {
    std::vector<DynamicPluginTensorDesc> io = descs(inputs(fused, -1, -1), DataType::kFLOAT, dims({-1, -1, 256}));
    expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) == 0, name + ": configure with wildcards");
    expect(a.build->configurePlugin(io.data(), nb, io.data() + nb, 1) == 0, name + ": configure with the attribute");
    expect(s.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": attribute levels vs L");
    expect(logger.take().find("has 3 levels but the inputs have L = 4") != std::string::npos,
           name + ": attribute levels logged");
    std::vector<Dims> other_s = inputs(fused, -1, -1);
    other_s[0].d[1] = kValues - 1;
    io = descs(other_s, DataType::kFLOAT, dims({-1, -1, 256}));
    expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) == 0, name + ": S free without the attribute");
    expect(a.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": attribute sum(H*W) vs S");
    expect(logger.take().find("sum(H*W) = 22223 values but value has S = 22222") != std::string::npos,
           name + ": attribute S logged");
    io = descs(inputs(fused, -1, -1, 3), DataType::kFLOAT, dims({-1, -1, 256}));
    expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": L mismatch");
    expect(logger.take().find("L (levels) differs") != std::string::npos, name + ": L mismatch logged");
    std::vector<Dims> bad_rank = inputs(fused, -1, -1);
    bad_rank[nb - 1].nbDims -= 1;
    io = descs(bad_rank, DataType::kFLOAT, dims({-1, -1, 256}));
    expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": wrong rank");
    expect(logger.take().find("must have rank") != std::string::npos, name + ": wrong rank logged");
    std::vector<Dims> many = inputs(fused, -1, -1);
    many[1].d[0] = many[2].d[0] = 17;
    many[3].d[fused ? 2 : 3] = 17;
    many[4].d[3] = 17;
    if (fused) {
      many[5].d[3] = 17 * kPoints;
    }
    io = descs(many, DataType::kFLOAT, dims({-1, -1, 256}));
    expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": 17 levels");
    expect(logger.take().find("exceeds the 16 levels") != std::string::npos, name + ": 17 levels logged");
    if (fused) {
      std::vector<Dims> ref3 = inputs(fused, -1, -1);
      ref3[3].d[3] = 3;
      io = descs(ref3, DataType::kFLOAT, dims({-1, -1, 256}));
      expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": reference dim 3");
      expect(logger.take().find("2 (x, y) or 4 (cx, cy, w, h)") != std::string::npos, name + ": reference logged");
      std::vector<Dims> logits = inputs(fused, -1, -1);
      logits[5].d[3] = kLevels * kPoints + 1;
      io = descs(logits, DataType::kFLOAT, dims({-1, -1, 256}));
      expect(p.build->configurePlugin(io.data(), nb, io.data() + nb, 1) != 0, name + ": logits L*P");
      expect(logger.take().find("must be L*P = 4*4 = 16, got 17") != std::string::npos, name + ": logits logged");
    }
    std::vector<PluginTensorDesc> rt = runtime_descs(inputs(fused, 2, 300), DataType::kHALF, out);
    expect(a.runtime->onShapeChange(rt.data(), nb, rt.data() + nb, 1) == 0, name + ": onShapeChange");
  }

  // enqueue with the attribute: an empty batch runs nothing; null tensors are refused by the
  // kernel library, whose message is logged and reported to the context's error recorder.
  {
    std::vector<const void*> tensors(nb, nullptr);
    void* output = nullptr;
    std::vector<PluginTensorDesc> empty = runtime_descs(inputs(fused, 0, 300), DataType::kFLOAT, dims({0, 300, 256}));
    expect(a.runtime->enqueue(empty.data(), empty.data() + nb, tensors.data(), &output, nullptr, nullptr) == 0,
           name + ": enqueue of an empty batch");
    Recorder recorder;
    Context context;
    context.recorder = &recorder;
    IPluginV3* attached = a.runtime->attachToContext(&context);
    expect(attached != nullptr, name + ": attachToContext");
    if (attached != nullptr) {
      IPluginV3OneRuntime* runtime = interfaces(attached).runtime;
      std::vector<PluginTensorDesc> rt = runtime_descs(inputs(fused, 2, 300), DataType::kFLOAT, out);
      expect(runtime->enqueue(rt.data(), rt.data() + nb, tensors.data(), &output, nullptr, nullptr) != 0,
             name + ": enqueue with null tensors fails");
      expect(logger.take().find("a required pointer is null") != std::string::npos, name + ": kernel error logged");
      expect(recorder.getNbErrors() == 1 && std::strstr(recorder.getErrorDesc(0), name.c_str()) != nullptr,
             name + ": kernel error reported to the error recorder");
      std::vector<PluginTensorDesc> wrong = runtime_descs(inputs(fused, 2, 300, kLevels, 4), DataType::kFLOAT, out);
      expect(runtime->enqueue(wrong.data(), wrong.data() + nb, tensors.data(), &output, nullptr, nullptr) != 0,
             name + ": enqueue re-checks the dims");
      expect(logger.take().find("M (heads) differs") != std::string::npos, name + ": enqueue dims logged");
      delete attached;
    }
    // Without the attribute the level table is copied from the device: with null tensors (and no
    // GPU here) that fails with a CUDA error, logged, never a crash.
    std::vector<PluginTensorDesc> rt = runtime_descs(inputs(fused, 2, 300), DataType::kFLOAT, out);
    expect(p.runtime->enqueue(rt.data(), rt.data() + nb, tensors.data(), &output, nullptr, nullptr) != 0,
           name + ": device level table from null tensors fails");
    expect(logger.take().find("spatial_shapes") != std::string::npos, name + ": device copy failure logged");
  }
  delete plain_plugin;
  delete attr_plugin;
  delete short_plugin;
}

// points_per_level and method: accepted forms, serialisation round trip, refusals naming the field.
void check_point_fields(IPluginCreatorV3One* creator, Logger& logger) {
  const std::string name = creator->getPluginName();
  const int32_t counts[] = {3, 6, 3, 4};
  const int64_t wide_counts[] = {3, 6, 3, 4};
  const int32_t discrete_code = 1;
  const std::vector<int32_t> expected_counts(std::begin(counts), std::end(counts));
  bool ok = false;
  struct Good {
    const char* label;
    std::vector<PluginField> fields;
    const char* method;  // serialised method bytes ("" when left out)
  };
  const Good good[] = {
      {"INT32 points_per_level and \"discrete\"",
       {PluginField("points_per_level", counts, PluginFieldType::kINT32, 4),
        PluginField("method", "discrete", PluginFieldType::kCHAR, 8)},
       "discrete"},
      {"INT64 points_per_level, spatial_shapes, \"discrete\" with its NUL",
       {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8),
        PluginField("points_per_level", wide_counts, PluginFieldType::kINT64, 4),
        PluginField("method", "discrete", PluginFieldType::kCHAR, 9)},
       "discrete"},
      {"method INT32 1", {PluginField("points_per_level", counts, PluginFieldType::kINT32, 4),
                          PluginField("method", &discrete_code, PluginFieldType::kINT32, 1)}, "discrete"},
      {"\"bilinear\" (the default, not serialised)",
       {PluginField("points_per_level", counts, PluginFieldType::kINT32, 4),
        PluginField("method", "bilinear", PluginFieldType::kCHAR, 8)},
       ""},
  };
  for (const Good& g : good) {
    IPluginV3* plugin = create(creator, g.fields);
    expect(plugin != nullptr, name + ": created with " + g.label);
    if (plugin == nullptr) {
      continue;
    }
    const Saved saved = saved_fields(interfaces(plugin).runtime, ok);
    expect(ok && saved.points == expected_counts && saved.method == g.method,
           name + ": " + g.label + " serialised, method '" + saved.method + "'");
    IPluginV3* restored = create(creator, saved.fields, -2, TensorRTPhase::kRUNTIME);
    expect(restored != nullptr, name + ": " + g.label + " deserialised");
    if (restored != nullptr) {
      const Saved again = saved_fields(interfaces(restored).runtime, ok);
      expect(ok && again.points == saved.points && again.method == saved.method && again.shapes == saved.shapes,
             name + ": " + g.label + " round trip");
      delete restored;
    }
    IPluginV3* copy = plugin->clone();
    expect(copy != nullptr && saved_fields(interfaces(copy).runtime, ok).points == expected_counts && ok,
           name + ": " + g.label + " clone");
    delete copy;
    delete plugin;
  }
  expect(logger.take().empty(), name + ": no error for valid point fields");

  const int32_t zero[] = {3, 0}, three[] = {3, 6, 3}, code2 = 2;
  const float floats[] = {3.f};
  const std::vector<int32_t> seventeen(17, 1);
  const int64_t huge[] = {int64_t{1} << 40};
  struct Bad {
    const char* label;
    std::vector<PluginField> fields;
    const char* mention;
  };
  const Bad bad[] = {
      {"FLOAT32 points", {PluginField("points_per_level", floats, PluginFieldType::kFLOAT32, 1)}, "INT32 or INT64"},
      {"zero points", {PluginField("points_per_level", zero, PluginFieldType::kINT32, 2)}, "level 1 has 0 points"},
      {"INT64 points over 2^31", {PluginField("points_per_level", huge, PluginFieldType::kINT64, 1)},
       "1099511627776 points"},
      {"17 counts", {PluginField("points_per_level", seventeen.data(), PluginFieldType::kINT32, 17)}, "length 17"},
      {"no counts", {PluginField("points_per_level", counts, PluginFieldType::kINT32, 0)}, "length 0"},
      {"null counts", {PluginField("points_per_level", nullptr, PluginFieldType::kINT32, 2)}, "no data"},
      {"counts given twice",
       {PluginField("points_per_level", counts, PluginFieldType::kINT32, 4),
        PluginField("points_per_level", counts, PluginFieldType::kINT32, 4)},
       "'points_per_level' is given more than once"},
      {"3 counts for 4 levels",
       {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8),
        PluginField("points_per_level", three, PluginFieldType::kINT32, 3)},
       "field 'points_per_level' has 3 entries but field 'spatial_shapes' has 4 levels"},
      {"method \"nearest\"", {PluginField("method", "nearest", PluginFieldType::kCHAR, 7)}, "got \"nearest\""},
      {"method INT32 2", {PluginField("method", &code2, PluginFieldType::kINT32, 1)}, "0 (bilinear) or 1 (discrete)"},
      {"method FLOAT32", {PluginField("method", floats, PluginFieldType::kFLOAT32, 1)}, "PluginFieldType"},
      {"empty method", {PluginField("method", "", PluginFieldType::kCHAR, 0)}, "'method' is empty"},
      {"method given twice",
       {PluginField("method", "discrete", PluginFieldType::kCHAR, 8),
        PluginField("method", "discrete", PluginFieldType::kCHAR, 8)},
       "'method' is given more than once"},
  };
  for (const Bad& b : bad) {
    IPluginV3* plugin = create(creator, b.fields);
    const std::string errors = logger.take();
    expect(plugin == nullptr, name + ": refuses " + b.label);
    expect(errors.find(b.mention) != std::string::npos && errors.find(name) != std::string::npos,
           name + ": " + b.label + " logged with '" + b.mention + "', got: " + errors);
    delete plugin;
  }
}

// Input dims of the per-level forms: samples (N, Lq, M, T, 2) and (N, Lq, M, T); `samples` is T.
std::vector<Dims> per_level_inputs(bool fused, int64_t n, int64_t q, int64_t samples, int64_t levels = kLevels) {
  const int64_t M = kHeads;
  std::vector<Dims> d = {dims({n, kValues, M, kDim}), dims({levels, 2}), dims({levels})};
  if (fused) {
    d.push_back(dims({n, q, levels, 4}));
  }
  d.push_back(dims({n, q, M, samples, 2}));
  d.push_back(dims({n, q, M, samples}));
  return d;
}

// The per-level forms: rank-5 samples with points_per_level, checks of L and T against the attribute,
// and enqueue reaching the kernel library with the counts and the method (which validates both).
void check_per_level_shapes(IPluginCreatorV3One* creator, bool fused, Logger& logger) {
  const std::string name = creator->getPluginName();
  const int32_t nb = fused ? 6 : 5;
  const int32_t counts[] = {3, 6, 3, 4};  // T = 16
  const int32_t three[] = {3, 6, 3};
  IPluginV3* with = create(creator, {PluginField("spatial_shapes", kShapes, PluginFieldType::kINT32, 8),
                                     PluginField("points_per_level", counts, PluginFieldType::kINT32, 4),
                                     PluginField("method", "discrete", PluginFieldType::kCHAR, 8)});
  IPluginV3* short_counts = create(creator, {PluginField("points_per_level", three, PluginFieldType::kINT32, 3)});
  if (with == nullptr || short_counts == nullptr) {
    expect(false, name + ": per-level plugins");
    delete with;
    delete short_counts;
    return;
  }
  const Plugin w = interfaces(with), s = interfaces(short_counts);
  const Dims out = dims({2, 300, kHeads * kDim});
  const Dims wild_out = dims({-1, -1, kHeads * kDim});
  const auto configure = [&](const Plugin& plugin, const std::vector<Dims>& in) {
    std::vector<DynamicPluginTensorDesc> io = descs(in, DataType::kFLOAT, wild_out);
    return plugin.build->configurePlugin(io.data(), nb, io.data() + nb, 1);
  };
  expect(configure(w, per_level_inputs(fused, -1, -1, 16)) == 0, name + ": per-level configure");
  expect(logger.take().empty(), name + ": no error for per-level inputs");
  {
    ExprBuilder builder;
    std::vector<DimsExprs> in;
    for (const Dims& d : per_level_inputs(fused, -1, -1, 16)) {
      in.push_back(builder.exprs(d));
    }
    DimsExprs result{};
    expect(w.build->getOutputShapes(in.data(), nb, nullptr, 0, &result, 1, builder) == 0 && result.nbDims == 3 &&
               result.d[2]->getConstantValue() == kHeads * kDim,
           name + ": per-level output shape");
  }
  expect(configure(w, inputs(fused, -1, -1)) != 0, name + ": per-level refuses rank-6 samples");
  expect(logger.take().find("must have rank 5") != std::string::npos, name + ": rank-6 samples logged");
  expect(configure(w, per_level_inputs(fused, -1, -1, 15)) != 0, name + ": T vs the attribute's sum");
  const std::string sum_error = logger.take();
  expect(sum_error.find("layer0") != std::string::npos &&
             sum_error.find(std::string("the points_per_level attribute sums to 16 samples but input ") +
                            (fused ? "4 (sampling_offsets)" : "3 (sampling_locations)") + " axis 3 is T = 15") !=
                 std::string::npos,
         name + ": T mismatch logged with the layer, attribute and both numbers, got: " + sum_error);
  expect(configure(s, per_level_inputs(fused, -1, -1, 12)) != 0, name + ": counts vs L");
  expect(logger.take().find("the points_per_level attribute has 3 entries but the inputs have L = 4 levels") !=
             std::string::npos,
         name + ": counts vs L logged");
  std::vector<Dims> differ = per_level_inputs(fused, -1, -1, 16);
  differ[nb - 1].d[3] = 17;
  expect(configure(w, differ) != 0, name + ": T of weights vs locations");
  expect(logger.take().find("T (samples per head) differs") != std::string::npos, name + ": T differs logged");

  // enqueue reaches the kernel library, which validates the counts (num_points T) and the method
  // before the tensors: null tensors are then its only complaint.
  std::vector<const void*> tensors(nb, nullptr);
  void* output = nullptr;
  std::vector<PluginTensorDesc> rt = runtime_descs(per_level_inputs(fused, 2, 300, 16), DataType::kFLOAT, out);
  expect(w.runtime->onShapeChange(rt.data(), nb, rt.data() + nb, 1) == 0, name + ": per-level onShapeChange");
  expect(w.runtime->enqueue(rt.data(), rt.data() + nb, tensors.data(), &output, nullptr, nullptr) != 0,
         name + ": per-level enqueue with null tensors fails");
  expect(logger.take().find("a required pointer is null") != std::string::npos,
         name + ": per-level problem valid up to the null tensors");
  delete with;
  delete short_counts;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: %s <path of libdetrt_trt_plugins.so>\n", argv[0]);
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::printf("FAIL: dlopen: %s\n", dlerror());
    return 1;
  }
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(ILoggerFinder*);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
  auto set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
  expect(get_creators != nullptr && set_logger_finder != nullptr, "getCreators and setLoggerFinder exported");
  expect(dlsym(library, "detrt_msda_forward_cuda") == nullptr, "the kernels' C ABI stays internal");
  if (get_creators == nullptr || set_logger_finder == nullptr) {
    return 1;
  }
  static Finder finder;
  set_logger_finder(&finder);

  int32_t count = 0;
  IPluginCreatorInterface* const* creators = get_creators(count);
  expect(count == 2 && creators != nullptr, "two creators");
  const char* names[] = {"DetrtMultiscaleDeformableAttn", "DetrtMultiscaleDeformableAttnFused"};
  for (int32_t i = 0; i < 2 && i < count; ++i) {
    expect(std::strcmp(creators[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator kind");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[i]);
    expect(std::strcmp(creator->getPluginName(), names[i]) == 0, std::string("creator name ") + names[i]);
    expect(std::strcmp(creator->getPluginVersion(), "1") == 0, "creator version 1");
    expect(std::strcmp(creator->getPluginNamespace(), "detrt") == 0, "creator namespace detrt");
    const PluginFieldCollection* fields = creator->getFieldNames();
    expect(fields != nullptr && fields->nbFields == 3 && std::strcmp(fields->fields[0].name, "spatial_shapes") == 0 &&
               std::strcmp(fields->fields[1].name, "points_per_level") == 0 &&
               fields->fields[1].type == PluginFieldType::kINT32 && std::strcmp(fields->fields[2].name, "method") == 0 &&
               fields->fields[2].type == PluginFieldType::kCHAR,
           "creator lists spatial_shapes, points_per_level and method (the ONNX parser passes only listed attributes)");
    check_fields(creator, finder.logger);
    check_point_fields(creator, finder.logger);
    check_shapes(creator, i == 1, finder.logger);
    check_per_level_shapes(creator, i == 1, finder.logger);
  }
  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
