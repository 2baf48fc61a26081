// Entry points of libdetrt_trt_plugins that TensorRT looks up when it loads the library
// (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, Python load_library), and the error
// reporting they make available to the plugins.
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <exception>

#include "msda_trt_plugin.h"

namespace detrt {
namespace trt {
namespace {

std::atomic<nvinfer1::ILoggerFinder*> logger_finder{nullptr};

}  // namespace

std::string format(const char* pattern, ...) {
  va_list arguments;
  va_start(arguments, pattern);
  va_list measure;
  va_copy(measure, arguments);
  const int length = std::vsnprintf(nullptr, 0, pattern, measure);
  va_end(measure);
  std::string text(length > 0 ? static_cast<size_t>(length) : 0, '\0');
  if (length > 0) {
    std::vsnprintf(&text[0], text.size() + 1, pattern, arguments);
  }
  va_end(arguments);
  return text;
}

void report_error(const char* message, nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code) noexcept {
  nvinfer1::ILogger* logger = nullptr;
  if (nvinfer1::ILoggerFinder* finder = logger_finder.load()) {
    try {
      logger = finder->findLogger();
    } catch (const std::exception&) {
      logger = nullptr;
    }
  }
  if (logger != nullptr) {
    logger->log(nvinfer1::ILogger::Severity::kERROR, message);
  } else {
    std::fprintf(stderr, "[detrt TensorRT plugin] %s\n", message);
  }
  if (recorder != nullptr) {
    recorder->reportError(code, message);
  }
}

}  // namespace trt
}  // namespace detrt

extern "C" {

// The creators of DetrtMultiscaleDeformableAttn and DetrtMultiscaleDeformableAttnFused.
__attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static detrt::trt::MsdaPluginCreator plain(detrt::trt::kPlainForm);
  static detrt::trt::MsdaPluginCreator fused(detrt::trt::kFusedForm);
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&plain, &fused};
  nbCreators = 2;
  return creators;
}

// TensorRT hands over the finder of its logger on load; plugin errors go to that logger.
__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  detrt::trt::logger_finder.store(finder);
}

}  // extern "C"
