"""The single configuration object shared by golden model, generators and testbenches.

Every register width in the hardware and every range check in the golden model
and the vector loader is derived here, from the bounds of SPEC §5, so there is
exactly one place where a width can be wrong. An impossible configuration is
refused with a ``ValueError`` that names the field and what to change.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SpikeConfig", "PRESETS", "KIRIN_MODE", "MODES", "ARITHMETIC_FIELDS", "VECTOR_INT_BITS", "OUT_BITS", "config_from",
           "code_max", "check_out_bits", "INPUT_STEPS", "GOLDEN_INPUT_STEPS", "step_grid", "check_outlier_bits",
           "signed_bits_for", "unsigned_bits_for"]

ENCODINGS = ("ttfs",)
# How a token's activation step reaches the neurons' thresholds. ``static``: one step per tensor, so
# each neuron has one constant Θ, Φ. ``pow2``, ``pow2/2``, ``pow2/4``: a step per token on the grid
# 2^(−j/R), so each neuron holds R constants and the token's exponent picks one and a power-of-two
# scale (dequantization-free dynamic mode). Arbitrary per-token steps would need a threshold word per
# token and neuron, which the tile does not read: the golden model evaluates them, labelled.
INPUT_STEPS = ("static", "pow2", "pow2/2", "pow2/4")
# The golden model's one policy beyond the tile's: ``any`` float step per token (evaluated, labelled golden-only).
GOLDEN_INPUT_STEPS = INPUT_STEPS + ("any",)
FIRINGS = ("division", "serial", "silence")
# How the golden model chooses the weight codes the tile is given (never what they mean, SPEC §2):
# per-channel round to nearest, or GPTQ's error-compensating rounding (golden/gptq.py).
WEIGHT_ROUNDINGS = ("rtn", "gptq")
# What calibrates the golden model besides a file's path (golden/calibration.py), and its rotations (golden/rotation.py).
CALIBRATION_SOURCES = ("shipped-text", "corpus")
ROTATIONS = ("none", "hadamard")
# Sizes a tile can be generated for in reasonable time (Llama-2-7B's largest is 11008):
MAX_FEATURES = 16384
MAX_PES = 256
MAX_LANES = 64
MAX_TOKENS = 4096
MIN_BLOCKS = 24  # blocks that share one encode pass, see SpikeConfig.for_layer
# Width of the vector format's `w` and `mant` arrays (int8); bounds w_bits, a_bits and outlier_bits.
VECTOR_INT_BITS = 8
# The fields that decide what a layer computes (every count), as opposed to the tile shape that computes it.
ARITHMETIC_FIELDS = ("w_bits", "a_bits", "out_bits", "salient", "kappa", "e_max", "salient_cap", "frac_bits",
                     "encoding", "outlier_bits", "input_step", "exponent_headroom", "weight_rounding",
                     "calibration", "calibration_tokens", "rotation")
MODES = ("spikequant", "kirin")


OUT_BITS = (2, 8)   # output-code widths b_out a tile can be generated for


def code_max(bits: int) -> int:
    """Largest code of a b-bit quantizer, 2^b − 1: every quantizer's clamp and every width's bound start here."""
    return (1 << bits) - 1


def check_out_bits(bits) -> int:
    """``bits`` if it is a valid output width b_out, else the one error that says the range."""
    lo, hi = OUT_BITS
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(f"out_bits (b_out) must be an integer in {lo}..{hi}, got {bits!r}")
    return bits


def unsigned_bits_for(bound: int) -> int:
    """Bits an unsigned register needs to hold every value in ``[0, bound]``."""
    return max(1, int(bound).bit_length())


def signed_bits_for(bound: int) -> int:
    """Bits a two's-complement register needs to hold every value in ``[-bound, bound]``."""
    return int(bound).bit_length() + 1




def _no_duplicate_keys(path):
    """A JSON object hook refusing a key given twice (JSON would keep the last one without a word)."""
    def hook(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"config file {path} gives {key!r} twice: keep one")
            seen.add(key)
        return dict(pairs)
    return hook

def step_grid(input_step: str) -> int | None:
    """R of a step policy, the one parser of it: per-token steps on the grid 2^(−j/R) (``pow2`` is R = 1);
    None for ``static`` (one step per tensor) and the golden-only ``any`` (no grid)."""
    if input_step not in GOLDEN_INPUT_STEPS:
        raise ValueError(f"input_step must be one of {GOLDEN_INPUT_STEPS}, got {input_step!r}")
    if input_step in ("static", "any"):
        return None
    return int(input_step.partition("/")[2] or 1)


def check_outlier_bits(bits, a_bits: int, tail: str = "") -> None:
    """Kirin's integer outliers: wider than the spiking mantissas, at most what a vector file stores."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not a_bits + 2 <= bits <= VECTOR_INT_BITS:
        raise ValueError(f"outlier_bits must be an integer in {a_bits + 2}..{VECTOR_INT_BITS} (wider than the "
                         f"{a_bits + 1}-bit spiking mantissas, at most {VECTOR_INT_BITS}: vectors store "
                         f"int{VECTOR_INT_BITS}){tail}, got {bits!r}")

@dataclass(frozen=True)
class SpikeConfig:
    """Bit widths, tile shape and encoding of one SpikeQuant layer (SPEC §2, §3, §5).

    Parameters
    ----------
    w_bits, a_bits, out_bits:
        Weight, activation and output-code widths (2..8). Output spike counts are
        the next layer's ``out_bits`` activation codes. ``out_bits`` defaults to 8:
        with the tile's output quantizer in the loop, 4-bit outputs break the
        model (docs/measurements.md, "Accuracy of what the hardware computes").
    salient:
        Keep MAD-salient activations as ``mantissa << shift`` (SPEC §2). Off means
        every shift is 0 and ``e_max`` is ignored.
    kappa:
        MAD multiplier of the salient rule.
    e_max:
        Largest per-element power-of-two shift of a salient mantissa.
    salient_cap:
        Most salient elements per token (``None``: no cap, S = K). Narrows the
        accumulator bound.
    frac_bits:
        Fraction bits F of the fixed-point threshold Θ and start potential Φ.
    in_features, out_features:
        Layer shape K and N the tile is generated for; K also bounds the PE's
        accumulator.
    pes, lanes:
        Tile shape: P neurons in parallel, L spike events per cycle.
    max_tokens:
        Tokens the tile's buffers address.
    encoding:
        Spike encoding; ``"ttfs"`` (time to first spike, SPEC §3).
    firing:
        How the neuron turns its potential into the count ``n``:
        ``"division"`` (default) by restoring division with shifted thresholds,
        one bit per cycle (b_out + 2 cycles, SPEC §3 option); ``"serial"`` one
        spike per cycle, subtracting Θ (up to 2^b_out − 1 cycles);
        ``"silence"`` Kirin's silence threshold (SPEC §4): one spike per
        neuron, at the step of an output window of 2^b_out steps where the
        falling threshold meets the potential. Same ``n`` from all three.
    outlier_bits:
        Kirin mode, W4A4&B (SPEC §4): ``None`` (SpikeQuant) or B, the width of
        signed integer outliers kept beside the spikes. An element with
        ``|mant| > 2^b_a − 1`` (up to ``2^(B−1) − 1``, with its shift) goes
        through the integer path, shift-and-add over its bits; the rest spike.
    weight_rounding:
        How the golden model picks each layer's weight codes: ``"gptq"``
        (default; error-compensating rounding on the shipped calibration text,
        golden/gptq.py) or ``"rtn"`` (round to nearest). Both give per-channel
        asymmetric ``w_bits`` codes with a zero point, so the hardware is the
        same; only which codes it holds differs (docs/measurements.md).
    calibration, calibration_tokens:
        What calibrates the golden model (GPTQ's Hessians, the static input
        and output ranges) and how many tokens of it: ``"shipped-text"``
        (default; the first tokens of the shipped text, before its held-out
        part), ``"corpus"`` (the calibration corpus shipped in
        golden/data/calibration, windows drawn from it) or a UTF-8 file's
        path (windows drawn from it). See golden/calibration.py.
    rotation:
        ``"none"`` (default) or ``"hadamard"``: orthogonal rotations of the
        residual stream and of each head's values folded into the weights
        before quantization (golden/rotation.py). The tile computes the same
        way; only its weight codes and ranges differ.
    """

    w_bits: int = 4
    a_bits: int = 4
    out_bits: int = 8
    salient: bool = True
    kappa: float = 6.0
    e_max: int = 7
    salient_cap: int | None = None
    frac_bits: int = 16
    in_features: int = 64
    out_features: int = 16
    pes: int = 4
    lanes: int = 2
    max_tokens: int = 16
    encoding: str = "ttfs"
    firing: str = "division"
    outlier_bits: int | None = None
    input_step: str = "pow2/4"
    exponent_headroom: int = 2
    weight_rounding: str = "gptq"
    calibration: str = "shipped-text"
    calibration_tokens: int = 1024
    rotation: str = "none"

    def __post_init__(self):
        def integer(name, lo, hi, what=None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}{what or ''}, got {value!r}")

        for name in ("w_bits", "a_bits"):  # |w| and a spike's |m| reach 2^b - 1; vector files store them as int8
            integer(name, 2, VECTOR_INT_BITS - 1, f" (the vector format stores w and mant as int{VECTOR_INT_BITS})")
        integer("out_bits", *OUT_BITS)
        if not isinstance(self.salient, bool):
            raise ValueError(f"salient must be true or false, got {self.salient!r}")
        if isinstance(self.kappa, bool) or not isinstance(self.kappa, (int, float)) \
                or not math.isfinite(self.kappa) or self.kappa <= 0:
            raise ValueError(f"kappa must be a positive number, got {self.kappa!r}")
        integer("e_max", 0, 15)
        integer("frac_bits", 0, 32)
        size_note = " (generation time grows with the layer size; larger layers are tiled by the caller)"
        integer("in_features", 1, MAX_FEATURES, size_note)
        integer("out_features", 1, MAX_FEATURES, size_note)
        if self.salient_cap is not None:
            integer("salient_cap", 0, self.in_features, " (in_features) or null")
        integer("pes", 1, MAX_PES)
        integer("lanes", 1, MAX_LANES)
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes must be a power of two (1, 2, 4, ...), got {self.lanes!r}")
        if self.out_features % self.pes:
            raise ValueError(
                f"out_features ({self.out_features}) is not a multiple of pes ({self.pes}): "
                f"choose pes dividing {self.out_features}")
        if self.in_features % self.lanes:
            raise ValueError(
                f"in_features ({self.in_features}) is not a multiple of lanes ({self.lanes}): "
                f"choose lanes dividing {self.in_features}")
        integer("max_tokens", 1, MAX_TOKENS)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.firing not in FIRINGS:
            raise ValueError(f"firing must be one of {FIRINGS}, got {self.firing!r}")
        if self.input_step not in INPUT_STEPS:
            raise ValueError(f"input_step must be one of {INPUT_STEPS}, got {self.input_step!r}"
                             + (" (arbitrary per-token steps need a threshold word per token, which the tile "
                                "does not read: choose a power-of-two grid)" if self.input_step == "any" else ""))
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ValueError(f"weight_rounding must be one of {list(WEIGHT_ROUNDINGS)}, got {self.weight_rounding!r}")
        if not isinstance(self.calibration, str) or not self.calibration:
            raise ValueError(f"calibration must be one of {list(CALIBRATION_SOURCES)} or a UTF-8 text file's path, "
                             f"got {self.calibration!r}")
        integer("calibration_tokens", 16, 1 << 20)
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {list(ROTATIONS)}, got {self.rotation!r}")
        integer("exponent_headroom", 0, 8, " (powers of two a token's step may exceed the calibration's largest)")
        if self.outlier_bits is not None:
            check_outlier_bits(self.outlier_bits, self.a_bits, " or null for SpikeQuant mode")
        if self.membrane_bits > 64:
            raise ValueError(
                f"the membrane needs {self.membrane_bits} bits (> 64, the int64 vector "
                f"contract): lower frac_bits ({self.frac_bits}), e_max ({self.e_max}) or set "
                f"salient_cap")

    # --- derived values: every width in golden, hw and verif comes from here ---

    @property
    def shift_max(self) -> int:
        """Largest shift an element can carry (0 when salient values are off)."""
        return self.e_max if self.salient else 0

    @property
    def weight_max(self) -> int:
        """Largest |w| of a signed weight code ``Wq − z`` (SPEC §2)."""
        return code_max(self.w_bits)

    @property
    def weight_bits(self) -> int:
        """Signed weight code width, b_w + 1."""
        return self.w_bits + 1

    @property
    def spike_max(self) -> int:
        """Largest |m| that travels as a TTFS spike, 2^b_a − 1."""
        return code_max(self.a_bits)

    @property
    def kirin(self) -> bool:
        """Kirin mode: integer outliers beside the spikes (``outlier_bits`` set)."""
        return self.outlier_bits is not None

    @property
    def outlier_max(self) -> int:
        """Largest |q| of a Kirin integer outlier, 2^(B−1) − 1 (0 in SpikeQuant mode)."""
        return (1 << (self.outlier_bits - 1)) - 1 if self.kirin else 0

    @property
    def outlier_planes(self) -> int:
        """Bit planes of an outlier's magnitude the integer path adds one by one (B − 1; 0 if off)."""
        return self.outlier_bits - 1 if self.kirin else 0

    @property
    def mantissa_max(self) -> int:
        """Largest |mant| of the vector contract: a spiking mantissa, or a Kirin outlier."""
        return max(self.spike_max, self.outlier_max)

    @property
    def mantissa_bits(self) -> int:
        """Signed mantissa width of the activation buffer: b_a + 1, or B in Kirin mode."""
        return self.outlier_bits if self.kirin else self.a_bits + 1

    @property
    def event_shift_max(self) -> int:
        """Largest shift a PE applies to a weight: e_max, plus bit planes B − 2 of a Kirin outlier."""
        return self.shift_max + max(self.outlier_planes - 1, 0)

    @property
    def event_shift_bits(self) -> int:
        return unsigned_bits_for(self.event_shift_max)

    @property
    def shift_bits(self) -> int:
        return unsigned_bits_for(self.shift_max)

    @property
    def window(self) -> int:
        """TTFS window T: a mantissa of magnitude |m| spikes at step T − |m| (SPEC §3)."""
        return self.spike_max + 1

    @property
    def step_bits(self) -> int:
        return unsigned_bits_for(self.window - 1)

    @property
    def fire_cycles(self) -> int:
        """Cycles after ``fire`` until the PE's count is final: b_out + 2 (division), 2^b_out (serial, silence)."""
        return self.out_bits + 2 if self.firing == "division" else self.max_count + 1

    @property
    def max_count(self) -> int:
        """Most output spikes a neuron fires in one window, 2^b_out − 1."""
        return code_max(self.out_bits)

    @property
    def count_bits(self) -> int:
        return self.out_bits

    @property
    def salient_bound(self) -> int:
        """S of SPEC §5: the salient elements (shifted, or Kirin outliers) a token may hold."""
        if not self.salient and not self.kirin:
            return 0
        return self.in_features if self.salient_cap is None else self.salient_cap

    @property
    def current_bound(self) -> int:
        """Bound on |I|, the sum of |w << e| over all spikes of a window.

        A Kirin outlier joins the current in the window's last step as
        ``w·q·2^e`` (its bit planes), so it counts |q| ≤ 2^(B−1) − 1 times.
        """
        s = self.salient_bound
        return self.weight_max * ((self.in_features - s) + s * max(1, self.outlier_max) * (1 << self.shift_max))

    @property
    def acc_bound(self) -> int:
        """|acc| ≤ (K − S)·m·w + S·max(m, q)·w·2^e_max (SPEC §5; q: a Kirin outlier)."""
        s = self.salient_bound
        return self.weight_max * ((self.in_features - s) * self.spike_max
                                  + s * self.mantissa_max * (1 << self.shift_max))

    @property
    def current_bits(self) -> int:
        return signed_bits_for(self.current_bound)

    @property
    def acc_bits(self) -> int:
        return signed_bits_for(self.acc_bound)

    @property
    def theta_bits(self) -> int:
        """Unsigned Θ width: a Θ above 2^F·|acc|max could never be reached by the integral."""
        return unsigned_bits_for(self.acc_bound << self.frac_bits)

    @property
    def theta_max(self) -> int:
        return (1 << self.theta_bits) - 1

    @property
    def phi_bits(self) -> int:
        """Signed Φ width: Φ ≈ (z_y + ½)·Θ with z_y < 2^b_out."""
        return self.theta_bits + self.out_bits + 1

    @property
    def phi_bound(self) -> int:
        return (1 << (self.phi_bits - 1)) - 1

    @property
    def membrane_bits(self) -> int:
        """Signed width of the firing potential V = ⌊2^F·acc / 2^s⌋ + Φ (SPEC §5), at the smallest scale shift s.

        The PE's membrane integrates acc alone (``acc_bits``); V is formed once, at fire time.
        """
        return signed_bits_for((self.acc_bound << (self.frac_bits - self.scale_shift_min)) + self.phi_bound)

    # --- the token's step: which threshold constant, and the scale shift s ---

    @property
    def threshold_grid(self) -> int:
        """R: threshold constants per neuron (steps on 2^(−j/R)); 1 for static and ``pow2`` steps."""
        return step_grid(self.input_step) or 1

    @property
    def threshold_words(self) -> int:
        """Words of the threshold memory: R constants per neuron, P neurons a word, so (N/P)·R."""
        return self.blocks * self.threshold_grid

    @property
    def scale_shift_min(self) -> int:
        """Smallest scale shift s: −``exponent_headroom`` (a step up to 2^H × the calibrated largest); 0 if static."""
        return 0 if self.input_step == "static" else -self.exponent_headroom

    @property
    def scale_shift_max(self) -> int:
        """Largest scale shift s; beyond F + acc_bits, ⌊2^F·acc/2^s⌋ is 0 or −1 whatever s is (0 if static)."""
        return 0 if self.input_step == "static" else self.frac_bits + self.acc_bits

    @property
    def exponent_min(self) -> int:
        """Smallest token exponent d = R·s + r the tile accepts."""
        return self.threshold_grid * self.scale_shift_min

    @property
    def exponent_max(self) -> int:
        return self.threshold_grid * self.scale_shift_max + self.threshold_grid - 1 if self.input_step != "static" else 0

    @property
    def scale_shift_bits(self) -> int:
        """Signed width of the PE's ``scale_shift`` input (s)."""
        return signed_bits_for(max(abs(self.scale_shift_min), self.scale_shift_max))

    @property
    def exponent_bits(self) -> int:
        """Signed width of the tile's ``exponent`` input (d: row r = d mod R, scale shift s = ⌊d/R⌋)."""
        return max(signed_bits_for(max(abs(self.exponent_min), self.exponent_max)), 1)

    @property
    def blocks(self) -> int:
        """Output blocks of P neurons per token."""
        return self.out_features // self.pes

    @property
    def k_words(self) -> int:
        """Activation-buffer words per token (L elements each)."""
        return self.in_features // self.lanes

    @property
    def k_bits(self) -> int:
        return unsigned_bits_for(self.in_features - 1)

    @property
    def token_bits(self) -> int:
        return unsigned_bits_for(self.max_tokens - 1)

    # --- naming and serialization ---

    @property
    def tag(self) -> str:
        """Short name that carries the configuration; Amaranth Verilog is not parameterized."""
        sal = f"s{self.shift_max}" + (f"c{self.salient_cap}" if self.salient_cap is not None else "")
        firing = "" if self.firing == "division" else f"_{self.firing}"
        if self.input_step != "pow2/4":
            firing += "_" + self.input_step.replace("/", "x")
        if self.exponent_headroom != 2:
            firing += f"_h{self.exponent_headroom}"
        outliers = f"q{self.outlier_bits}" if self.kirin else ""
        return (f"w{self.w_bits}a{self.a_bits}{outliers}o{self.out_bits}{sal}f{self.frac_bits}"
                f"_k{self.in_features}n{self.out_features}p{self.pes}l{self.lanes}{firing}")

    def derived(self) -> dict:
        """Every derived width and bound, for manifests and reports."""
        names = ["shift_max", "weight_bits", "spike_max", "mantissa_max", "mantissa_bits", "shift_bits",
                 "outlier_max", "outlier_planes", "event_shift_max", "window", "max_count",
                 "salient_bound", "current_bound", "current_bits", "acc_bound", "acc_bits",
                 "theta_bits", "phi_bits", "membrane_bits", "blocks", "k_words", "token_bits",
                 "threshold_grid", "threshold_words", "scale_shift_min", "scale_shift_max", "exponent_min",
                 "exponent_max", "exponent_bits"]
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SpikeConfig":
        return cls(**cls._check_fields(data))

    @classmethod
    def _check_fields(cls, data) -> dict:
        """``data`` if it is a dict naming only SpikeConfig fields; otherwise the error says which."""
        if not isinstance(data, dict):
            raise ValueError(f"a configuration must be a JSON object of SpikeConfig fields, got a "
                             f"{type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(fields)}")
        return data

    @classmethod
    def from_json(cls, path: str | Path) -> "SpikeConfig":
        return cls.from_dict(cls.read_fields(path))

    @classmethod
    def read_fields(cls, path: str | Path) -> dict:
        """A JSON file's object of SpikeConfig fields, checked for names only (for partial configs)."""
        from spikeacc.workdirs import input_file
        path = input_file(path, "config file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys(path))
        except UnicodeDecodeError:
            raise ValueError(f"config file {path} is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from None
        return cls._check_fields(data)

    def replace(self, **changes) -> "SpikeConfig":
        return dataclasses.replace(self, **changes)

    @property
    def mode(self) -> str:
        """``"kirin"`` with integer outliers, else ``"spikequant"``."""
        return "kirin" if self.kirin else "spikequant"

    def arithmetic(self) -> dict:
        """The fields that decide every count (:data:`ARITHMETIC_FIELDS`); the rest only shape the tile."""
        return {name: getattr(self, name) for name in ARITHMETIC_FIELDS}

    def with_arithmetic_of(self, other: "SpikeConfig") -> "SpikeConfig":
        """This tile shape computing ``other``'s arithmetic (its firing unit too, which Kirin mode fixes)."""
        return self.replace(**other.arithmetic(), firing=other.firing)

    def in_mode(self, mode: str) -> "SpikeConfig":
        """The same configuration in SpikeQuant or Kirin mode (Kirin: :data:`KIRIN_MODE`'s outliers and firing)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "kirin":
            return self if self.kirin else self.replace(**KIRIN_MODE)
        if not self.kirin:
            return self
        return self.replace(outlier_bits=None, firing="division" if self.firing == "silence" else self.firing)

    def for_layer(self, in_features: int, out_features: int) -> "SpikeConfig":
        """The same arithmetic for another layer shape; P and L adapted to it.

        L becomes the largest power of two dividing both L and K. P becomes the
        largest divisor of N up to this P that leaves at least ``MIN_BLOCKS``
        blocks, so a token's encode pass (K/L cycles) is shared by enough blocks
        to keep the tile >= 90% utilized (measured: SmolLM2 k/v_proj, N = 192,
        78.5% at P = 32, 92% at P = 8).
        """
        divisors = [p for p in range(1, self.pes + 1) if out_features % p == 0]
        enough = [p for p in divisors if out_features // p >= MIN_BLOCKS]
        pes = max(enough) if enough else max(divisors)
        lanes = math.gcd(self.lanes, in_features)
        return self.replace(in_features=in_features, out_features=out_features, pes=pes, lanes=lanes)


PRESETS: dict[str, SpikeConfig] = {
    # Small enough for fast unit regressions; PE accumulator for 64 inputs.
    "default": SpikeConfig(),
    # SmolLM2-135M attention projection shape (hidden 576). P = 32, L = 2 keeps the
    # tile >= 90% utilized at K = 576 (L = 8: 79%, partly filled step rows; P = 64:
    # 84%, the per-token encode pass is shared by fewer blocks) and ~98.6% at 7B sizes.
    "smollm2": SpikeConfig(in_features=576, out_features=576, pes=32, lanes=2, max_tokens=8),
    # Llama-2-7B shapes: q_proj 4096x4096, down_proj 11008 -> 4096.
    "llama2-q": SpikeConfig(in_features=4096, out_features=4096, pes=32, lanes=2, max_tokens=1),
    "llama2-down": SpikeConfig(in_features=11008, out_features=4096, pes=32, lanes=2, max_tokens=1),
}
# Kirin mode (SPEC §4): 8-bit integer outliers beside the spikes, silence-threshold firing.
KIRIN_MODE = {"outlier_bits": 8, "firing": "silence"}
PRESETS["kirin"] = PRESETS["default"].replace(**KIRIN_MODE)


def config_from(preset: str | None = None, config: str | Path | None = None) -> SpikeConfig:
    """The configuration a command names: a JSON file of fields, a preset, or the default preset."""
    if preset is not None and config is not None:
        raise ValueError("give --preset or --config, not both")
    if config is not None:
        return SpikeConfig.from_json(config)
    name = preset or "default"
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
