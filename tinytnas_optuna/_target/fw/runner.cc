// tinytnas TFLM runner for Cortex-M under emulation (QEMU mps2-* or unicorn).
// The host places a "blob" at TT_BLOB_ADDR before the core starts (QEMU: -device loader,
// unicorn: mem_write):  struct BlobHeader, then the .tflite at +64, then the raw input tensor
// bytes at +64+align16(model_len). Output goes through semihosting (newlib rdimon) stdout.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

struct BlobHeader {
  uint32_t magic;       // 'TTNB' = 0x424e5454
  uint32_t model_len;   // bytes of .tflite
  uint32_t input_len;   // bytes of the input tensor (must equal the tensor's bytes; 0: zeros)
  uint32_t arena_size;  // arena to offer (0: TT_ARENA_MAX)
  uint32_t invokes;     // number of Invoke() calls (>=1)
  uint32_t flags;       // bit 0: per-operator profile (SysTick ticks + emulator markers)
                        // bit 1: also find the smallest arena AllocateTensors accepts (bisection)
  uint32_t reserved[10];
};

extern "C" const uint8_t __tt_blob_start[];  // from the linker script
#ifndef TT_ARENA_MAX
#define TT_ARENA_MAX (512 * 1024)
#endif
alignas(16) static uint8_t g_arena[TT_ARENA_MAX];

// Markers: emulators hook these addresses (unicorn) to delimit the measured region.
// 'volatile' argument + noinline keep them as real calls.
extern "C" void __attribute__((noinline, noipa, used)) tt_mark(volatile uint32_t id) { __asm volatile("" ::: "memory"); }
// Cycle count hook for QEMU SysTick-based timing (startup.c).
extern "C" uint64_t tt_systick_now(void);
extern "C" void tt_systick_start(void);

// Per-operator events: markers 100+i / 200+i for emulators, SysTick ticks for QEMU -icount.
class TTProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMax = 64;
  uint32_t BeginEvent(const char* tag) override {
    uint32_t i = n_ < kMax ? n_++ : kMax - 1;
    tags_[i] = tag;
    tt_mark(100 + i);
    start_[i] = tt_systick_now();
    return i;
  }
  void EndEvent(uint32_t i) override {
    ticks_[i] += tt_systick_now() - start_[i];
    tt_mark(200 + i);
  }
  void Print() const {
    for (uint32_t i = 0; i < n_; ++i)
      printf("TT_OP %lu %s ticks=%lu\n", (unsigned long)i, tags_[i], (unsigned long)ticks_[i]);
  }
  void Reset() { n_ = 0; }

 private:
  uint32_t n_ = 0;
  const char* tags_[kMax] = {};
  uint64_t start_[kMax] = {};
  uint64_t ticks_[kMax] = {};
};

static const char* kKinds[] = {"TfLiteEvalTensor data", "Persistent TfLiteTensor data",
                               "Persistent TfLiteTensor quantization data", "Persistent buffer data",
                               "TfLiteTensor variable buffer data", "NodeAndRegistration struct",
                               "Operator runtime data"};

// True when AllocateTensors succeeds with an arena of `size` bytes (fresh interpreter each time).
static bool AllocatesWith(const tflite::Model* model, const tflite::MicroOpResolver& resolver,
                          size_t size) {
  tflite::RecordingMicroInterpreter interpreter(model, resolver, g_arena, size);
  return interpreter.AllocateTensors() == kTfLiteOk;
}

// Smallest arena (bytes, 16-aligned base) for which AllocateTensors succeeds. TFLM needs more
// than arena_used_bytes() when the memory planner's temporary data (allocation info + planner
// scratch, freed before the report) exceeds the planned head; the end alignment also matters.
static size_t MinArena(const tflite::Model* model, const tflite::MicroOpResolver& resolver,
                       size_t used) {
  size_t lo = used / 2, hi = used + 16;
  while (!AllocatesWith(model, resolver, hi)) {
    lo = hi;
    hi *= 2;
    if (hi > TT_ARENA_MAX) return 0;
  }
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (AllocatesWith(model, resolver, mid)) hi = mid; else lo = mid;
  }
  return hi;
}

int main() {
  const BlobHeader* hdr = reinterpret_cast<const BlobHeader*>(__tt_blob_start);
  if (hdr->magic != 0x424e5454u) {
    printf("TT_ERROR bad blob magic 0x%08lx\n", (unsigned long)hdr->magic);
    return 2;
  }
  const uint8_t* model_data = __tt_blob_start + 64;
  const uint8_t* input_data = model_data + ((hdr->model_len + 15u) & ~15u);
  size_t arena_size = hdr->arena_size ? hdr->arena_size : TT_ARENA_MAX;
  if (arena_size > TT_ARENA_MAX) arena_size = TT_ARENA_MAX;

  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    printf("TT_ERROR schema version %lu\n", (unsigned long)model->version());
    return 2;
  }
  // The operators of the TinyTNAS family (tinytnas_optuna._hardware.model_operators) + AVERAGE_POOL_2D.
  static tflite::MicroMutableOpResolver<10> resolver;
#ifndef TT_ALL_TYPES
  // int8-only registrations of the CMSIS-NN kernels: the models are fully int8, and this keeps
  // the int4/int16 CMSIS-NN code (about 25 KB) out of the image.
  resolver.AddConv2D(tflite::Register_CONV_2D_INT8());
  resolver.AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT8());
  resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8());
  resolver.AddMaxPool2D(tflite::Register_MAX_POOL_2D_INT8());
  resolver.AddSoftmax(tflite::Register_SOFTMAX_INT8());
  // Not in the TinyTNAS family; lets TFLM's person_detect.tflite reference model run (cross-check).
  resolver.AddAveragePool2D(tflite::Register_AVERAGE_POOL_2D_INT8());
#else
  resolver.AddAveragePool2D();
  resolver.AddConv2D();
  resolver.AddDepthwiseConv2D();
  resolver.AddFullyConnected();
  resolver.AddMaxPool2D();
  resolver.AddSoftmax();
#endif
  resolver.AddMean();
  resolver.AddReshape();
  resolver.AddQuantize();
  resolver.AddDequantize();

  if (hdr->flags & 2u) {
    size_t used = 0;
    {
      tflite::RecordingMicroInterpreter probe(model, resolver, g_arena, arena_size);
      if (probe.AllocateTensors() == kTfLiteOk) used = probe.arena_used_bytes();
    }
    printf("TT_MIN_ARENA %lu\n", used ? (unsigned long)MinArena(model, resolver, used) : 0ul);
  }
  tt_mark(1);
  static TTProfiler profiler;
  const bool per_op = hdr->flags & 1u;
  tflite::RecordingMicroInterpreter interpreter(model, resolver, g_arena, arena_size, nullptr,
                                                per_op ? &profiler : nullptr);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("TT_ERROR AllocateTensors failed (arena %lu)\n", (unsigned long)arena_size);
    return 3;
  }
  tt_mark(2);
  const tflite::RecordingMicroAllocator& alloc = interpreter.GetMicroAllocator();
  alloc.PrintAllocations();
  printf("TT_ARENA used=%lu\n", (unsigned long)interpreter.arena_used_bytes());
  for (int k = 0; k < (int)tflite::RecordedAllocationType::kNumAllocationTypes; ++k) {
    tflite::RecordedAllocation r =
        alloc.GetRecordedAllocation(static_cast<tflite::RecordedAllocationType>(k));
    printf("TT_KIND '%s' used=%lu requested=%lu count=%lu\n", kKinds[k], (unsigned long)r.used_bytes,
           (unsigned long)r.requested_bytes, (unsigned long)r.count);
  }

  TfLiteTensor* in = interpreter.input(0);
  if (hdr->input_len == 0) {
    memset(in->data.raw, 0, in->bytes);  // no input given: all zeros (arena-only runs)
  } else if (in->bytes != hdr->input_len) {
    printf("TT_ERROR input bytes %lu != blob %lu\n", (unsigned long)in->bytes,
           (unsigned long)hdr->input_len);
    return 4;
  } else {
    memcpy(in->data.raw, input_data, in->bytes);
  }
  uint32_t invokes = hdr->invokes ? hdr->invokes : 1;
  tt_systick_start();
  uint64_t t0 = tt_systick_now();
  tt_mark(3);
  for (uint32_t i = 0; i < invokes; ++i) {
    profiler.Reset();
    if (interpreter.Invoke() != kTfLiteOk) {
      printf("TT_ERROR Invoke failed\n");
      return 5;
    }
  }
  tt_mark(4);
  uint64_t t1 = tt_systick_now();
  uint64_t dt = t1 - t0;  // newlib-nano printf has no %llu
  printf("TT_SYSTICK invokes=%lu ticks_hi=%lu ticks_lo=%lu\n", (unsigned long)invokes,
         (unsigned long)(dt >> 32), (unsigned long)(dt & 0xffffffffu));
  if (per_op) profiler.Print();
  TfLiteTensor* out = interpreter.output(0);
  printf("TT_OUTPUT type=%d bytes=%lu hex=", (int)out->type, (unsigned long)out->bytes);
  for (size_t i = 0; i < out->bytes; ++i) printf("%02x", out->data.uint8[i]);
  printf("\n");
  if (out->type == kTfLiteInt8) {
    printf("TT_OUTPUT_INT8");
    for (size_t i = 0; i < out->bytes; ++i) printf(" %d", (int)out->data.int8[i]);
    printf("\n");
  }
  printf("TT_DONE\n");
  return 0;
}
