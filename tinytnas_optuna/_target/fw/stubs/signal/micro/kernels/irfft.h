// Stub: the offline TFLM tarball omits signal/. micro_mutable_op_resolver.h only needs the
// declaration of the default argument; it is never called (no Signal ops in our models).
#pragma once
#include "tensorflow/lite/micro/micro_common.h"
namespace tflite { namespace tflm_signal {
TFLMRegistration* Register_IRFFT();
} }
