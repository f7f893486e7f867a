/* Minimal Cortex-M start-up for QEMU mps2-an386 (M4) / mps2-an500 (M7) and unicorn.
 * Vector table at 0x0, copy .data, zero .bss, enable the FPU, init newlib's semihosting
 * (rdimon) handles, run static constructors, call main, exit through semihosting. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __etext_data, __data_start__, __data_end__, __bss_start__, __bss_end__, __StackTop;
extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);

__attribute__((used, section(".vectors"))) const void* const g_vectors[16 + 8] = {
    &__StackTop, (void*)Reset_Handler,
    (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler, (void*)Fault_Handler,
    (void*)Fault_Handler, 0, 0, 0, 0,
    (void*)Fault_Handler, (void*)Fault_Handler, 0, (void*)Fault_Handler, (void*)SysTick_Handler,
};

#define SCB_ICSR (*(volatile uint32_t*)0xE000ED04u)
#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)

/* SysTick as a 64-bit counter of core clocks (QEMU: virtual time; with -icount it is a
 * function of the executed instruction count). */
static volatile uint32_t g_systick_wraps;
void SysTick_Handler(void) { g_systick_wraps++; }
void tt_systick_start(void) {
  SYST_CSR = 0;
  SYST_RVR = 0x00FFFFFFu;
  SYST_CVR = 0;
  g_systick_wraps = 0;
  SYST_CSR = 7u; /* enable, interrupt, processor clock */
  while (SYST_CVR == 0) {
  } /* wait for the first reload, else the first reading is off by one period */
}
uint64_t tt_systick_now(void) {
  /* With interrupts masked, a wrap that happened but is not yet serviced shows as PENDSTSET. */
  __asm volatile("cpsid i" ::: "memory");
  uint32_t w = g_systick_wraps;
  uint32_t v = SYST_CVR;
  if (SCB_ICSR & (1u << 26)) {
    v = SYST_CVR;
    w++;
  }
  __asm volatile("cpsie i" ::: "memory");
  return (uint64_t)w * 0x01000000ull + (0x00FFFFFFu - v);
}

void Fault_Handler(void) {
  /* semihosting SYS_EXIT, reason ADP_Stopped_RunTimeErrorUnknown */
  register uint32_t r0 __asm("r0") = 0x18;
  register uint32_t r1 __asm("r1") = 0x20023;
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {
  }
}

void Reset_Handler(void) {
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access */
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  uint32_t* src = &__etext_data;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

/* -nostartfiles drops crti.o/crtn.o; newlib's __libc_init_array still calls _init. */
void _init(void) {}
void _fini(void) {}
