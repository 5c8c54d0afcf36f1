"""The SPX volatility surface's parameters and the spread model: one object, one file.

Why: the simulator prices SPX options from a model, and the model's numbers (how the ATM vol
sits against VIX in each regime, how steep the put and call sides are, how wide the quotes
are) are *fitted* to Cboe's real CNDR and PUT indices by `spx-bot calibrate` (bot/calibrate.py),
not tuned by hand. The fitted numbers ship as `bot/params/surface.json` (package data) and every
price in the project (simulated exchange, gateway, backtest, `replicate`, `quote`) reads them
through `bot.pricing`, which holds the one active `Surface`. A config key (`sim.surface`) or
`--surface FILE` points at another file.

Pure: parsing and validation only; `load_surface` is the only function that reads a file.
A bad file is a `SurfaceError` whose str() is one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

FORMAT = "spx-surface/1"
SHIPPED = "surface.json"  # in bot/params


class SurfaceError(ValueError):
    """A surface file that cannot be used; str() is one line."""


@dataclass(frozen=True)
class Surface:
    """Parameters of the SPX option model (see `bot.pricing` for the formulas).

    ATM level: ATM vol = ratio(VIX) x exp(term_beta x ln(VIX3M / VIX)) x the VIX term structure
    interpolated in total variance to the option's maturity. ratio(VIX) is piecewise linear
    through (atm_vix[i], atm_ratio[i]), flat outside: VIX is a variance-swap rate that includes
    the skew and the variance premium, and how far an ATM option trades below it depends on
    the regime (a calm market prices the ATM far below VIX, a panicked one near or above it).
    term_beta > 0 lifts the ATM vol when the term structure is in contango.

    Smile (`pricing.spx_smile`): factor on the ATM vol by standardized moneyness m; puts
    1 + put_slope |m| + put_curve m^2, calls 1 - call_slope m + call_curve m^2, both sides'
    slopes scaled by (skew_ref_vol / ATM vol)^skew_vol_exp (the skew steepens when vol is low),
    clipped to [min_ratio, max_ratio], flat beyond wing_sd.

    Spread (`pricing.quote_spread`): full spread = clip(fraction x w_vix x w_expiry x mid,
    min_spread, max_spread x w_vix), with w_vix = max(VIX / 20, 0.5)^spread_vix_exp (wider when
    VIX is high) and w_expiry = 1 + spread_near x exp(-days / spread_near_days) (wider, as a
    share of the price, in an option's last days).
    """

    atm_vix: tuple[float, ...] = (20.0,)
    atm_ratio: tuple[float, ...] = (0.9,)
    term_beta: float = 0.0
    put_slope: float = 0.15
    put_curve: float = 0.06
    call_slope: float = 0.12
    call_curve: float = 0.05
    skew_vol_exp: float = 0.0
    skew_ref_vol: float = 0.16
    min_ratio: float = 0.75
    max_ratio: float = 3.0
    wing_sd: float = 2.5
    spread_fraction: float = 0.04
    spread_vix_exp: float = 0.0
    spread_near: float = 0.0
    spread_near_days: float = 1.0
    min_spread: float = 0.05
    max_spread: float = 2.00
    fit: dict = field(default_factory=dict, compare=False)  # how the numbers were found (not used to price)

    def __post_init__(self):
        problem = _problem(self)
        if problem:
            raise SurfaceError(problem)

    def with_values(self, **values) -> Surface:
        """A copy with some parameters replaced (tuples for the knot lists)."""
        values = {k: tuple(float(x) for x in v) if k in _KNOTS else v for k, v in values.items()}
        return replace(self, **values)

    def to_doc(self) -> dict:
        d = asdict(self)
        fit = d.pop("fit")
        return {"format": FORMAT,
                "atm": {"vix": list(d.pop("atm_vix")), "ratio": list(d.pop("atm_ratio")),
                        "term_beta": d.pop("term_beta")},
                "smile": {k: d.pop(k) for k in _SMILE},
                "spread": {k: d.pop(k) for k in _SPREAD},
                "fit": fit}


_KNOTS = ("atm_vix", "atm_ratio")
_SMILE = ("put_slope", "put_curve", "call_slope", "call_curve", "skew_vol_exp", "skew_ref_vol",
          "min_ratio", "max_ratio", "wing_sd")
_SPREAD = ("spread_fraction", "spread_vix_exp", "spread_near", "spread_near_days", "min_spread", "max_spread")
# bounds every file must respect: wide enough for any sane fit, tight enough to refuse nonsense
BOUNDS = {
    "atm_ratio": (0.3, 2.0), "term_beta": (-3.0, 3.0),
    "put_slope": (-0.5, 1.0), "put_curve": (0.0, 0.5), "call_slope": (-0.5, 1.0), "call_curve": (0.0, 0.5),
    "skew_vol_exp": (-2.0, 2.0), "skew_ref_vol": (0.01, 1.0),
    "min_ratio": (0.2, 1.0), "max_ratio": (1.0, 10.0), "wing_sd": (0.5, 10.0),
    "spread_fraction": (0.0, 0.5), "spread_vix_exp": (0.0, 3.0), "spread_near": (0.0, 10.0),
    "spread_near_days": (0.05, 60.0), "min_spread": (0.0, 1.0), "max_spread": (0.05, 50.0),
}


def _problem(s: Surface) -> str | None:
    """What is wrong with a surface, in one line, or None."""
    for f in fields(s):
        if f.name == "fit":
            continue
        value = getattr(s, f.name)
        values = value if f.name in _KNOTS else (value,)
        if not isinstance(values, tuple) or not values:
            return f"{f.name}: expected a non-empty list of numbers"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"{f.name}: {v!r} is not a finite number"
            lo, hi = BOUNDS.get(f.name, (-math.inf, math.inf))
            if not lo <= v <= hi:
                return f"{f.name} = {v:g} is outside [{lo:g}, {hi:g}]"
    if len(s.atm_vix) != len(s.atm_ratio):
        return f"atm: {len(s.atm_vix)} VIX knots but {len(s.atm_ratio)} ratios"
    if any(b <= a for a, b in zip(s.atm_vix, s.atm_vix[1:])) or s.atm_vix[0] <= 0:
        return "atm.vix: knots must be positive and ascending"
    if s.min_spread > s.max_spread:
        return f"spread: min_spread {s.min_spread:g} above max_spread {s.max_spread:g}"
    if not isinstance(s.fit, dict):
        return "fit: expected a table"
    return None


def surface_from_doc(doc: object, where: str = "surface") -> Surface:
    """A `Surface` from a parsed document (the JSON file's shape); SurfaceError if it is not one."""
    if not isinstance(doc, dict):
        raise SurfaceError(f"{where}: expected a JSON object")
    if doc.get("format") != FORMAT:
        raise SurfaceError(f"{where}: format must be {FORMAT!r}, not {doc.get('format')!r}")
    unknown = set(doc) - {"format", "atm", "smile", "spread", "fit"}
    if unknown:
        raise SurfaceError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}")
    values: dict = {}
    for section, names in (("atm", {"vix": "atm_vix", "ratio": "atm_ratio", "term_beta": "term_beta"}),
                           ("smile", {k: k for k in _SMILE}), ("spread", {k: k for k in _SPREAD})):
        part = doc.get(section, {})
        if not isinstance(part, dict):
            raise SurfaceError(f"{where}: [{section}] must be an object")
        bad = set(part) - set(names)
        if bad:
            raise SurfaceError(f"{where}: unknown {section} parameter(s) {', '.join(sorted(bad))}")
        for key, name in names.items():
            if key in part:
                v = part[key]
                if name in _KNOTS:
                    if not isinstance(v, list):
                        raise SurfaceError(f"{where}: {section}.{key} must be a list of numbers")
                    v = tuple(v)
                values[name] = v
    if "fit" in doc:
        values["fit"] = doc["fit"]
    try:
        return Surface(**values)
    except SurfaceError as exc:
        raise SurfaceError(f"{where}: {exc}") from None


def load_surface(path: str | Path | None = None) -> Surface:
    """The surface in `path`, or the shipped fit (bot/params/surface.json) when path is None."""
    if path is None:
        text = resources.files("bot").joinpath("params", SHIPPED).read_text()
        return surface_from_doc(json.loads(text), f"bot/params/{SHIPPED}")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SurfaceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SurfaceError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    return surface_from_doc(doc, str(path))


def write_surface(surface: Surface, path: str | Path) -> None:
    Path(path).write_text(json.dumps(surface.to_doc(), indent=2) + "\n")
