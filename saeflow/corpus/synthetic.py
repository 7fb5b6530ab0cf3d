"""Seeded generator of SYNTHETIC financial news headlines (the default domain corpus).

No financial text ships with any offline package, so the workflow writes its own:
wire-style headlines about a set of tickers, each written from a template for one
event type (earnings, guidance, analyst rating, ...) with a known intended sentiment
(bullish / bearish / neutral), dated on business days. Every row is marked
``synthetic=True`` and ``source="synthetic_headlines"``: results on this corpus test
the machinery; they are not findings about real markets.

``label_noise`` resamples some labels after the text is written, as annotation noise
would. ``labels``, ``dates`` and ``tickers_per_row`` fix each row's intended
sentiment, date and ticker, e.g. to plant a trading signal for a backtest to recover.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd

SENTIMENTS: tuple[str, ...] = ("bullish", "bearish", "neutral")
SOURCE = "synthetic_headlines"

# One block per event type; "+" bullish, "-" bearish, "=" neutral phrasings.
# {co} is the company name or ticker, {name} always the name; see `_slot`.
_TEMPLATE_TEXT = """
[earnings]
+ {co} shares {up} {pct} after {q} revenue beats estimates
+ {name} posts {q} profit of {eps} a share, topping Wall Street forecasts
+ {co} {qs} sales of {prod} grow {bigpct}, beating expectations
+ {name} reports record {q} revenue of {bn}, well above consensus
- {co} shares {down} {pct} after {q} revenue misses estimates
- {name} {q} profit of {eps} a share falls short as {prod} demand weakens
- {co} swings to surprise {qs} loss of {mn}
- {name} {q} earnings drop {bigpct}, far below analyst forecasts
= {name} {q} results in line with estimates; revenue at {bn}
= {co} to report {q} earnings on {day}
= {name} {qs} earnings of {eps} a share match consensus
= {co} {q} revenue of {bn} roughly matches expectations
[guidance]
+ {name} raises full-year revenue outlook to {bn} on strong {prod} demand
+ {co} lifts {qs} revenue forecast to {bn}; shares {up} {pct} premarket
+ {name} sees {year} sales up {bigpct}, ahead of forecasts, on demand in {region}
- {name} cuts full-year revenue outlook to {bn}, citing weak demand in {region}
- {co} warns {qs} revenue will miss forecasts; shares {down} {pct}
- {name} lowers {year} profit guidance as costs climb {bigpct}
= {name} reaffirms full-year revenue guidance of {bn}
= {co} keeps {qs} revenue forecast unchanged at {bn}
= {name} to update investors on {year} outlook at investor day on {day}
[analyst_rating]
+ {co} upgraded to {buy} at {firm}; price target raised to {price}
+ {firm} lifts {co} price target to {price}, sees {bigpct} upside
+ {firm} starts {name} at {buy} with {price} target, citing {prod} momentum
- {co} cut to {sell} at {firm}; price target lowered to {price}
- {firm} downgrades {name} to {sell}, sees {bigpct} downside on {region} slowdown
- {firm} slashes {co} price target to {price}, warns on margins
= {firm} maintains {hold} rating on {co}, price target {price}
= {firm} reiterates {hold} on {name} ahead of {q} results; target {price}
= {firm} initiates coverage of {co} at {hold} with {price} price target
[merger]
+ {name} to buy {target} for {bn} in deal seen lifting growth
+ {co} shares {up} {pct} on report of takeover interest from {peer}
+ {name} wins approval for {bn} acquisition of {target}
- {name}'s {bn} deal for {target} blocked by {agency}
- {co} shares {down} {pct} as {peer} walks away from merger talks
- Investors balk at {name}'s {bn} bid for {target}; shares {down} {pct}
= {name} completes previously announced {bn} acquisition of {target}
= {co} says {bn} purchase of {target} expected to close in {qs}
= {name} sets {day} shareholder vote on {target} deal
[product]
+ {name} unveils next-generation {prod} to strong reviews; shares {up} {pct}
+ {co} {prod} orders beat expectations by {bigpct}, {firm} says
+ {name} expands {prod} to {region}, sees {bn} opportunity
- {name} delays {prod} launch to {day} amid production problems
- {co} pulls {prod} update after widespread complaints; shares {down} {pct}
- {firm} says {co} {prod} sales fell {bigpct} in {region}
= {name} to unveil {prod} update at event on {day}
= {co} rolls out {prod} in {region} on schedule, priced from {price}
= {name} says {prod} will be available in {region} from {day}
[legal]
+ {name} wins dismissal of {mn} patent lawsuit over {prod}
+ {co} settles probe by {agency} without penalty; shares {up} {pct}
+ Court overturns {mn} verdict against {name} in {prod} dispute
- {agency} opens probe into {name} over {prod} practices; shares {down} {pct}
- {name} fined {bn} by {agency}
- {co} hit with {mn} class-action lawsuit alleging misleading disclosures
= Judge sets {day} trial date in {name} {prod} patent case
= {co} legal reserves unchanged at {mn} in {qs} filing
= {name} to answer information request from {agency} by {day}
[management]
+ {name} shares {up} {pct} after hiring well-regarded {role} from {peer}
+ {co} shares {up} {pct} as activist takes {bn} stake, pushes for new strategy
+ {name} names {peer} veteran as {role}; shares {up} {pct}
- {name} {role} resigns abruptly; shares {down} {pct}
- {co} shares {down} {pct} after surprise departure of {role}
- {name} ousts {role} amid accounting review of {mn} in contracts
= {name} appoints new {role}, effective {day}
= {co} to hold annual shareholder meeting on {day}
= {name} announces planned {role} succession; change takes effect {day}
[macro]
+ {co} shares {up} {pct} as Fed signals rate cuts
+ Tech rally lifts {co} {pct} as {region} growth data surprises
+ {name} gains {pct} as weaker dollar boosts overseas sales outlook
- {co} shares {down} {pct} as bond yields spike
- Tariff fears hit {name}, which earns {bigpct} of revenue in {region}
- {co} falls {pct} with broader market after hot inflation report
= {co} shares little changed ahead of Fed decision on {day}
= {name} trades flat as investors await jobs report; volume {bigpct} below average
= {name} earns {bigpct} of revenue in {region}, filing shows
[dividend]
+ {name} raises quarterly dividend {bigpct} to {div} a share
+ {co} declares special dividend of {div} per share
+ {name} lifts payout to {div}, extending streak of increases to {years} years
- {name} cuts quarterly dividend to {div} to preserve cash
- {co} suspends {div} dividend as losses in {region} mount
- {name} slashes payout by {bigpct}; shares {down} {pct}
= {name} declares regular quarterly dividend of {div} per share
= {co} keeps quarterly dividend at {div}
= {name} dividend of {div} payable on {day}
[buyback]
+ {name} announces {bn} share buyback
+ {co} shares {up} {pct} on expanded {bn} repurchase program
+ {name} doubles buyback to {bn}, signaling confidence
- {name} halts {bn} share buyback to conserve cash
- {co} scales back repurchases by {bigpct} amid weak cash flow
- {name} suspends buyback program; shares {down} {pct}
= {name} completes previously announced {bn} buyback
= {co} repurchased {mn} of stock in {qs}, filing shows
= {name} buyback authorization unchanged at {bn}
[partnership]
+ {name} signs multiyear deal with {peer} worth {bn}
+ {co} wins {mn} government contract for {prod}
+ {name} expands {prod} partnership with {peer} to {region}; shares {up} {pct}
- {peer} ends {prod} partnership with {name}; shares {down} {pct}
- {co} loses {mn} contract to rival {peer}
- {name} talks with {peer} on {bn} deal collapse
= {name} and {peer} renew {prod} agreement on similar terms through {later}
= {co} named one of several vendors on {mn} contract
= {name} to present at {firm} technology conference on {day}
[operations]
+ {name} says {prod} supply constraints have eased; shipments up {bigpct}
+ {co} opens new {region} plant, lifting capacity {bigpct}
+ {name} cost program to save {bn} a year, ahead of plan
- {name} warns of {prod} shortages after supplier disruption in {region}
- {co} to cut {jobs} jobs as sales slump
- Outage at {name}'s {prod} hits customers for hours; shares {down} {pct}
= {name} to open new facility in {region} in {later}, employing {jobs}
= {co} moves {prod} unit to new {region} headquarters on {day}
= {co} completes planned reorganization of {region} operations on {day}
[credit]
+ {rater} upgrades {name} to {credit}, citing strong cash flow
+ {co} bonds rally as {rater} lifts outlook to positive; spreads tighten {bps}
+ {name} cuts debt by {bn}, ahead of schedule
- {rater} downgrades {name} to {credit}, citing rising debt
- {co} bonds slide as {rater} reviews rating for downgrade; spreads widen {bps}
- {name} borrowing costs jump after {bn} debt-funded deal
= {name} prices {bn} bond offering in line with guidance
= {rater} affirms {co} at {credit} after {q} review; outlook stable
= {co} files to refinance {bn} of notes due {later}
"""

# Word pools for `_slot`: "key: a | b | ..."; a key may span several lines.
_VOCAB_TEXT = """
up: jump | rise | climb | surge | rally | gain | advance | soar
down: fall | drop | slide | sink | tumble | slump | retreat | plunge
firm: Morgan Stanley | Goldman Sachs | Barclays | UBS | Citi | Jefferies | Bernstein
firm: Wedbush | Piper Sandler | Evercore ISI | BofA Securities | Deutsche Bank
firm: RBC Capital | Raymond James | KeyBanc | Mizuho | Oppenheimer
buy: buy | overweight | outperform | strong buy | accumulate
sell: sell | underweight | underperform | reduce
hold: hold | neutral | equal-weight | market perform | sector perform
role: chief executive | chief financial officer | chief operating officer | president
role: chief technology officer | head of sales | general counsel | cloud chief
region: Europe | China | India | Japan | Latin America | the Middle East | Canada
region: Southeast Asia | Germany | Brazil | the UK | South Korea | Australia
agency: the FTC | the SEC | the European Commission | the Justice Department
agency: UK regulators | Chinese regulators | a state attorney general
peer: Oracle | IBM | Samsung | Sony | Walmart | Intel | Cisco | SoftBank | Siemens
peer: Toyota | Disney | Salesforce | Adobe | Verizon | AT&T | Comcast | Qualcomm
target: a cloud security startup | a chip designer | a data analytics firm
target: an AI startup | a payments company | a European rival | a film studio
target: a logistics company | a battery maker | a gaming studio | a software maker
rater: Moody's | S&P | Fitch
credit: AA | AA- | A+ | A | A- | BBB+ | BBB | BBB-
"""

# Ticker: company name | products (anything a headline can launch, ship or sell).
_COMPANY_TEXT = """
MSFT: Microsoft | Azure | Windows | Surface laptops | Xbox | Office 365
AMZN: Amazon | AWS | Prime | Alexa devices | Kindle | grocery delivery
NVDA: Nvidia | GeForce graphics cards | data-center GPUs | Drive platform | AI chips
NFLX: Netflix | streaming service | ad-supported tier | original series | games
TSLA: Tesla | Model 3 | Model Y | Powerwall | Autopilot software | Cybertruck
AAPL: Apple | iPhone | iPad | Mac | Apple Watch | App Store | AirPods
GOOGL: Alphabet | Google Cloud | Pixel phones | YouTube | Android | search ads
JPM: JPMorgan Chase | credit cards | mobile banking app | payments platform
XOM: Exxon Mobil | LNG project | low-carbon fuel | refining unit | chemicals plant
META: Meta Platforms | Instagram | WhatsApp | Quest headsets | Reels
INTC: Intel | Xeon processors | foundry service | PC chips | networking chips
"""
_FALLBACK_PRODUCTS = ("flagship product", "software platform", "core service")
_ORDINALS = ("first", "second", "third", "fourth")


def _parse_vocab(text: str) -> dict[str, tuple[str, ...]]:
    """Parse "key: a | b" lines, joining repeated keys in order."""
    vocab: dict[str, tuple[str, ...]] = {}
    for line in text.strip().splitlines():
        key, items = line.split(": ", 1)
        vocab[key] = vocab.get(key, ()) + tuple(s.strip() for s in items.split("|"))
    return vocab


def _parse_templates(text: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """Parse the template table into {(event, sentiment): phrasings}."""
    sign = {"+": "bullish", "-": "bearish", "=": "neutral"}
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    event = ""
    for line in text.strip().splitlines():
        if line.startswith("["):
            event = line.strip("[]")
            continue
        key = (event, sign[line[0]])
        table[key] = table.get(key, ()) + (line[2:],)
    return table


_TEMPLATES = _parse_templates(_TEMPLATE_TEXT)
_VOCAB = _parse_vocab(_VOCAB_TEXT)
_COMPANIES = _parse_vocab(_COMPANY_TEXT)
EVENTS: tuple[str, ...] = tuple(dict.fromkeys(event for event, _ in _TEMPLATES))


def company_name(ticker: str) -> str:
    """The company name for a ticker; unknown tickers get "<TICKER> Inc."."""
    return _COMPANIES[ticker][0] if ticker in _COMPANIES else f"{ticker} Inc."


def _products(ticker: str) -> tuple[str, ...]:
    return _COMPANIES[ticker][1:] if ticker in _COMPANIES else _FALLBACK_PRODUCTS


@cache
def _fields(template: str) -> tuple[str, ...]:
    """The distinct slot names in a template, in order of first use."""
    names = (f for _, f, _, _ in string.Formatter().parse(template) if f)
    return tuple(dict.fromkeys(names))


# Slots that need only the generator: amounts in wire-story formats.
_AMOUNTS = {
    "pct": lambda rng: f"{rng.uniform(1.0, 12.0):.1f}%",
    "bigpct": lambda rng: f"{rng.integers(5, 60)}%",
    "bps": lambda rng: f"{rng.integers(5, 90)} basis points",
    "price": lambda rng: f"${rng.integers(15, 950)}",
    "eps": lambda rng: f"${rng.uniform(0.05, 4.5):.2f}",
    "div": lambda rng: f"${rng.uniform(0.05, 1.5):.2f}",
    "bn": lambda rng: f"${rng.uniform(0.5, 60.0):.1f} billion",
    "mn": lambda rng: f"${rng.integers(20, 990)} million",
    "jobs": lambda rng: f"{int(rng.integers(2, 120)) * 100:,}",
    "years": lambda rng: f"{rng.integers(5, 40)}",
}


# Slots that depend on the row: its company, and dates relative to its own date.
_CONTEXT = {
    "co": lambda rng, tk, d: company_name(tk) if rng.random() < 0.6 else tk,
    "name": lambda rng, tk, d: company_name(tk),
    "prod": lambda rng, tk, d: _pick(rng, _products(tk)),
    "q": lambda rng, tk, d: f"{_ORDINALS[_last_quarter(d)]}-quarter",
    "qs": lambda rng, tk, d: f"Q{_last_quarter(d) + 1}",
    "year": lambda rng, tk, d: f"{d.year}",
    "later": lambda rng, tk, d: f"{d.year + rng.integers(1, 8)}",
    "day": lambda rng, tk, d: _month_day(d + pd.Timedelta(days=rng.integers(3, 60))),
}


def _slot(name: str, rng: np.random.Generator, ticker: str, date: pd.Timestamp) -> str:
    """Draw one value for slot `name` in a headline about `ticker` on `date`."""
    if name in _VOCAB:
        return _pick(rng, _VOCAB[name])
    if name in _AMOUNTS:
        return _AMOUNTS[name](rng)
    return _CONTEXT[name](rng, ticker, date)


def _last_quarter(date: pd.Timestamp) -> int:
    """Index 0-3 of the last calendar quarter finished before `date`."""
    return (date.quarter - 2) % 4


def _month_day(date: pd.Timestamp) -> str:
    return f"{date:%B} {date.day}"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _write(
    rng: np.random.Generator,
    event: str,
    sentiment: str,
    ticker: str,
    date: pd.Timestamp,
) -> str:
    """One headline about `ticker` on `date` for an event, written with a sentiment."""
    template = _pick(rng, _TEMPLATES[event, sentiment])
    text = template.format(
        **{f: _slot(f, rng, ticker, date) for f in _fields(template)}
    )
    return text[0].upper() + text[1:]


def generate_headlines(
    n_docs: int,
    start_date: str,
    end_date: str,
    tickers: Sequence[str],
    label_noise: float,
    seed: int,
    labels: Sequence[str] | None = None,
    dates: Sequence | None = None,
    tickers_per_row: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Generate `n_docs` synthetic headlines with known sentiment, date and ticker.

    Each row's intended sentiment (from `labels`, else uniform over SENTIMENTS),
    date (from `dates`, else a uniform business day in [start_date, end_date]),
    ticker (from `tickers_per_row`, else uniform over `tickers`) and event type
    (uniform over EVENTS) pick a template whose slots are then filled at random.
    Exactly round(label_noise * n_docs) rows then get `label` resampled from the
    other two sentiments, so their label disagrees with the text.

    Rows are sorted by date (stable, so given rows keep their order within a day)
    and numbered "syn-000000", ... after sorting. Only `default_rng(seed)` is used.

    Returns columns doc_id, text, label, intended_label, date (datetime64[ns]),
    ticker, event, source ("synthetic_headlines"), synthetic (always True).
    """
    start, end = _check_args(n_docs, start_date, end_date, tickers, label_noise)
    for arg, values in [
        ("labels", labels),
        ("dates", dates),
        ("tickers_per_row", tickers_per_row),
    ]:
        if values is not None and len(values) != n_docs:
            raise ValueError(f"{arg} has {len(values)} rows, expected n_docs={n_docs}")
    if labels is not None and not set(labels) <= set(SENTIMENTS):
        unknown = sorted(set(labels) - set(SENTIMENTS))
        raise ValueError(f"labels has unknown values {unknown}; use {SENTIMENTS}")

    rng = np.random.default_rng(seed)
    intended = list(labels) if labels is not None else _draw(rng, SENTIMENTS, n_docs)
    days = pd.bdate_range(start, end)
    if dates is None:
        dates = days[rng.integers(len(days), size=n_docs)]
    row_dates = pd.DatetimeIndex(pd.to_datetime(list(dates))).astype("datetime64[ns]")
    row_tickers = (
        list(tickers_per_row)
        if tickers_per_row is not None
        else _draw(rng, tickers, n_docs)
    )
    events = _draw(rng, EVENTS, n_docs)
    texts = [
        _write(rng, *row)
        for row in zip(events, intended, row_tickers, row_dates, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "text": texts,
            "label": _add_noise(rng, intended, label_noise),
            "intended_label": intended,
            "date": row_dates,
            "ticker": row_tickers,
            "event": events,
            "source": SOURCE,
            "synthetic": True,
        }
    )
    frame = frame.sort_values("date", kind="stable", ignore_index=True)
    frame.insert(0, "doc_id", [f"syn-{i:06d}" for i in range(n_docs)])
    return frame


def _check_args(
    n_docs: int,
    start_date: str,
    end_date: str,
    tickers: Sequence[str],
    label_noise: float,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Refuse bad scalar arguments, naming the argument; return the parsed dates."""
    if n_docs < 1:
        raise ValueError(f"n_docs must be at least 1, got {n_docs}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    if len(tickers) == 0:
        raise ValueError("tickers must name at least one ticker")
    start, end = pd.Timestamp(start_date), pd.Timestamp(end_date)
    if end < start:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}")
    if len(pd.bdate_range(start, end)) == 0:
        raise ValueError(f"no business day between {start_date} and {end_date}")
    return start, end


def _draw(rng: np.random.Generator, options: Sequence[str], n: int) -> list[str]:
    """n uniform draws (with replacement) from `options`."""
    return [options[i] for i in rng.integers(len(options), size=n)]


def _add_noise(rng: np.random.Generator, intended: list[str], rate: float) -> list[str]:
    """Resample exactly round(rate * n) labels, each to one of the other two."""
    noisy = list(intended)
    for i in rng.choice(len(noisy), size=round(rate * len(noisy)), replace=False):
        others = [s for s in SENTIMENTS if s != noisy[i]]
        noisy[i] = others[int(rng.integers(2))]
    return noisy
