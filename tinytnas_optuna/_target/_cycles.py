"""Cycles of one inference: QEMU's execution trace weighted by a Cortex-M instruction timing model.

QEMU (``-d in_asm,exec,nochain``) logs every translated block's instructions once and every
executed block; between the runner's 3rd and 4th ``tt_mark`` call (``Invoke``) each executed
block contributes its instructions, weighted by the Cortex-M4 timings of the Technical Reference
Manual (``docs/figures.md``, from the issue-13 prototype, where unicorn gave the same counts):

- 1 cycle: ALU, MUL/MLA, DSP SIMD, VFP add/mul, IT;
- LDR/STR and variants (VLDR/VSTR too) 2, or 1 right after another single load/store;
- LDM/STM/PUSH/POP (and VFP forms) 1 + N registers, LDRD/STRD 3;
- a branch ending a block 1 + P (P = 2 refill cycles; also taken when a conditional one is not),
  TBB/TBH 2 + P, a load or pop of PC + P;
- SDIV/UDIV 7 (2-12 by operands), VDIV/VSQRT 14.

The Cortex-M33 is given the same model (3-stage single-issue pipeline too). The Cortex-M7 figure
is one cycle per instruction plus max(1, N/2) per load/store multiple (1 for LDRD/STRD) and the
divides: it ignores dual issue (fewer cycles) and cache stalls (more); a rough figure. No flash
wait states (QEMU's memory has none): on a board running from flash with wait states, latency is
higher.
"""

from __future__ import annotations

import re

#: Refill cycles after a taken branch (1-3 on the Cortex-M4; 2 is the prototype's choice).
BRANCH_PENALTY = 2

_BLOCK = re.compile(r"^IN:[^\n]*\n((?:0x[0-9a-f]+:[^\n]*\n)+)", re.MULTILINE)
_INSN = re.compile(
    r"^0x([0-9a-f]+):\s+(?:[0-9a-f]{4}(?: [0-9a-f]{4})?)\s+(\S+)\s*([^\n]*)$", re.MULTILINE
)
_TRACE = re.compile(
    r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/[^\]]*\] ?(\S*)", re.MULTILINE
)
_SINGLE_MEMORY = re.compile(r"^(?:ldr|str|vldr|vstr)(?!d|ex)")
_MULTIPLE = re.compile(r"^(?:ldm|stm|push|pop|vldm|vstm|vpush|vpop)")
_BRANCH = re.compile(r"^(?:b|bl|blx|bx|cbz|cbnz)(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|"
                     r"gt|le|al)?(?:\.w|\.n)?$")


def _registers(operands: str) -> int:
    """Registers in a register list, e.g. ``{r4, r5, lr}`` or ``{d8, d9, d10}``.

    Args:
        operands: The operand text.

    Returns:
        Their number (ranges like ``r4-r7`` and ``d8-d15`` counted out).

    Examples:
        >>> _registers("{r4, r5, r6, lr}"), _registers("r0!, {r1-r3}"), _registers("{d8-d11}")
        (4, 3, 4)
    """
    inside = operands[operands.find("{") + 1: operands.rfind("}")]
    count = 0
    for item in filter(None, (part.strip() for part in inside.split(","))):
        low, _, high = item.partition("-")
        if high:
            count += int(re.sub(r"\D", "", high)) - int(re.sub(r"\D", "", low)) + 1
        else:
            count += 1
    return count


def _block_cycles(insns: list[tuple[str, str]], m7: bool) -> int:
    """Cycles of one execution of a translated block.

    Args:
        insns: ``(mnemonic, operands)`` of its instructions, in order.
        m7: Use the Cortex-M7 single-issue count instead of the Cortex-M4 model.

    Returns:
        The cycles.

    Examples:
        Two pipelined loads, an add, and a taken branch: 2 + 1 + 1 + (1 + 2).

        >>> _block_cycles([("ldr", "r0, [r1]"), ("ldr", "r2, [r1, #4]"), ("adds", "r0, r2"),
        ...                ("bne", "#0x100")], m7=False)
        7
    """
    cycles = 0
    previous_single = False
    last = len(insns) - 1
    for index, (mnemonic, operands) in enumerate(insns):
        base = mnemonic.split(".")[0]
        writes_pc = "pc" in operands.split(",")[0] or (base.startswith("pop") and "pc" in operands)
        single = bool(_SINGLE_MEMORY.match(base))
        if m7:
            cost = 1
            if _MULTIPLE.match(base):
                cost += max(1, _registers(operands) // 2)
            elif base.startswith(("ldrd", "strd")):
                cost += 1
        elif single:
            cost = 1 if previous_single else 2
        elif _MULTIPLE.match(base):
            cost = 1 + _registers(operands)
        elif base.startswith(("ldrd", "strd")):
            cost = 3
        elif base in ("tbb", "tbh"):
            cost = 2 + BRANCH_PENALTY
        elif index == last and _BRANCH.match(base):
            cost = 1 + BRANCH_PENALTY
        else:
            cost = 1
        if base in ("sdiv", "udiv"):
            cost = 7
        elif base.startswith(("vdiv", "vsqrt")):
            cost = 14
        if writes_pc and not m7 and not _BRANCH.match(base):
            cost += BRANCH_PENALTY
        cycles += cost
        previous_single = single
    return cycles


def count_cycles(log: str, core: str) -> tuple[int, int]:
    """Instructions and cycles of ``Invoke`` from a QEMU ``in_asm,exec,nochain`` log.

    Args:
        log: The log text of one run of the runner (no per-operator markers).
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.

    Returns:
        ``(instructions, cycles)`` of the blocks executed between the 3rd and 4th ``tt_mark``.

    Raises:
        ValueError: When the log lacks the markers or a block's instructions.
    """
    blocks: dict[int, list[tuple[str, str]]] = {}
    for block in _BLOCK.finditer(log):
        insns = _INSN.findall(block.group(1))
        if insns:
            blocks[int(insns[0][0], 16)] = [(m, o) for _, m, o in insns]
    m7 = core == "cortex-m7"
    weights: dict[int, tuple[int, int]] = {}
    marks = instructions = cycles = 0
    for trace in _TRACE.finditer(log):
        if trace.group(2) == "tt_mark" and int(trace.group(1), 16) in blocks:
            marks += 1
            if marks == 4:
                return instructions, cycles
            continue
        if marks != 3:
            continue
        pc = int(trace.group(1), 16)
        if pc not in weights:
            if pc not in blocks:
                raise ValueError(f"QEMU log has no instructions for the block at {pc:#x}")
            weights[pc] = (len(blocks[pc]), _block_cycles(blocks[pc], m7))
        instructions += weights[pc][0]
        cycles += weights[pc][1]
    raise ValueError(f"QEMU log has {marks} of the runner's 4 markers")
