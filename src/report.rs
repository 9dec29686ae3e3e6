//! The backtest report a trader reads: `report.html` (one self-contained page that opens
//! offline: no script, no external file) with the summary table and three charts drawn with
//! plotters — equity with a drawdown panel, position over time, and each instrument's price
//! with its buy and sell fills marked — each also written as an SVG file. Time axes are UTC
//! with ticks; values carry their unit (the instruments' settlement currency, base units).
//!
//! Off the hot path: written once, after the replay.

use std::fmt::Write as _;

use anyhow::Context as _;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use tradeloop_engine::event::Side;

use crate::backtest::{Report, Stats};

/// Chart size, pixels.
const WIDTH: u32 = 960;
const HEIGHT: u32 = 420;
const FONT: &str = "sans-serif";

/// Every file of the report: (file name, contents).
///
/// # Errors
/// If a chart cannot be drawn (a plotters error, named).
pub fn files(bt: &Report, stats: &Stats) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![
        ("equity.svg".to_owned(), equity_chart(bt)?),
        ("position.svg".to_owned(), position_chart(bt)?),
    ];
    for (i, symbol) in bt.symbols.iter().enumerate() {
        if bt.fills.iter().any(|f| f.instrument.get() == i)
            || bt.prices.iter().any(|(_, p)| p[i].raw() > 0)
        {
            out.push((
                format!("price-{}.svg", file_safe(symbol)),
                price_chart(bt, i)?,
            ));
        }
    }
    let html = html(bt, stats, &out);
    out.push(("report.html".to_owned(), html));
    Ok(out)
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Seconds since the epoch as `HH:MM:SS` UTC (with the date when the span crosses days).
fn clock(secs: f64, with_date: bool) -> String {
    let s = secs.max(0.0) as u64;
    let (day, rem) = (s / 86_400, s % 86_400);
    let t = format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    if with_date {
        let date = iso_date(day * 86_400 * 1_000_000_000);
        format!("{} {t}", &date[5..])
    } else {
        t
    }
}

/// The UTC date of `ns` since the epoch as `YYYY-MM-DD`.
fn iso_date(ns: u64) -> String {
    let d = tradeloop_adapters::recorder::utc_date(ns);
    match (d.get(0..4), d.get(4..6), d.get(6..8)) {
        (Some(y), Some(m), Some(day)) => format!("{y}-{m}-{day}"),
        _ => d,
    }
}

/// The x range of a run (seconds since the epoch) and how to label it.
struct TimeAxis {
    t0: f64,
    t1: f64,
    /// The span crosses days: tick labels carry the date.
    with_date: bool,
    desc: String,
}

/// The x range of the run and how to label it.
fn time_axis(bt: &Report) -> TimeAxis {
    let first = bt
        .equity
        .first()
        .map_or(bt.span_ns.0, |e| e.0.min(bt.span_ns.0.max(1)));
    let last = bt
        .equity
        .last()
        .map_or(bt.span_ns.1, |e| e.0)
        .max(first + 1);
    let (t0, t1) = (first as f64 / 1e9, last as f64 / 1e9);
    let day0 = iso_date(first);
    let day1 = iso_date(last);
    let with_date = day0 != day1;
    let desc = if with_date {
        format!("time (UTC, {day0} to {day1})")
    } else {
        format!("time (UTC, {day0})")
    };
    TimeAxis {
        t0,
        t1,
        with_date,
        desc,
    }
}

fn money(m: tradeloop_engine::fixed::Money) -> f64 {
    m.to_decimal().to_f64().unwrap_or(0.0)
}

/// A value range with some room, never empty.
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = (hi - lo).abs().max(1e-9);
    (lo - span * 0.05)..(hi + span * 0.05)
}

/// A chart of values over time on an SVG drawing area.
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart of y over UTC time on `area`, its mesh drawn: `caption`, `y` range and label, the
/// time axis labelled (`desc`) and ticked.
fn time_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    axis: &TimeAxis,
    y: std::ops::Range<f64>,
    y_desc: &str,
    y_labels: usize,
) -> anyhow::Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(90)
        .build_cartesian_2d(axis.t0..axis.t1, y)
        .map_err(plot_err)?;
    let with_date = axis.with_date;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(y_labels)
        .x_label_formatter(&|x| clock(*x, with_date))
        .y_desc(y_desc)
        .x_desc(axis.desc.as_str())
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// Draws the legend of `chart` in its upper left corner.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)
}

/// Equity (realised + unrealised − fees) over time, with its drawdown below.
fn equity_chart(bt: &Report) -> anyhow::Result<String> {
    let axis = time_axis(bt);
    let (t0, t1) = (axis.t0, axis.t1);
    let equity: Vec<(f64, f64)> = bt
        .equity
        .iter()
        .map(|(t, e)| (*t as f64 / 1e9, money(*e)))
        .collect();
    let mut peak = f64::NEG_INFINITY;
    let drawdown: Vec<(f64, f64)> = equity
        .iter()
        .map(|&(t, e)| {
            peak = peak.max(e);
            (t, e - peak)
        })
        .collect();
    let lo = equity.iter().map(|p| p.1).fold(0.0, f64::min);
    let hi = equity.iter().map(|p| p.1).fold(0.0, f64::max);
    let dd_lo = drawdown.iter().map(|p| p.1).fold(0.0, f64::min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT + 160)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (upper, lower) = root.split_vertically(HEIGHT);
        let mut chart = time_chart(
            &upper,
            "Equity: realised + unrealised − fees",
            &axis,
            padded(lo, hi),
            "equity (settlement currency)",
            10,
        )?;
        chart
            .draw_series(LineSeries::new(
                [(t0, 0.0), (t1, 0.0)],
                RGBColor(150, 150, 150),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                equity.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("equity")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        legend(&mut chart)?;
        let mut dd = time_chart(
            &lower,
            "Drawdown from the running peak",
            &axis,
            padded(dd_lo, 0.0),
            "drawdown",
            4,
        )?;
        dd.draw_series(AreaSeries::new(
            drawdown.iter().copied(),
            0.0,
            RED.mix(0.35),
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Each instrument's position over time, from its fills.
fn position_chart(bt: &Report) -> anyhow::Result<String> {
    let axis = time_axis(bt);
    let (t0, t1) = (axis.t0, axis.t1);
    let n = bt.symbols.len();
    let mut series: Vec<Vec<(f64, f64)>> = vec![vec![(t0, 0.0)]; n];
    let mut qty = vec![0f64; n];
    for f in &bt.fills {
        let i = f.instrument.get();
        let t = f.ts_ns as f64 / 1e9;
        let q = f.qty.to_decimal().to_f64().unwrap_or(0.0);
        series[i].push((t, qty[i]));
        qty[i] += if f.side == Side::Buy { q } else { -q };
        series[i].push((t, qty[i]));
    }
    for (s, q) in series.iter_mut().zip(&qty) {
        s.push((t1, *q));
    }
    let lo = series.iter().flatten().map(|p| p.1).fold(0.0, f64::min);
    let hi = series.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = time_chart(
            &root,
            "Position",
            &axis,
            padded(lo, hi),
            "position (base units; + long, − short)",
            10,
        )?;
        for (i, (points, symbol)) in series.iter().zip(&bt.symbols).enumerate() {
            if points.len() <= 2 {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(symbol.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Instrument `i`'s price (mid, else last trade, at each sample) with its fills: buys as
/// green triangles, sells as red circles.
fn price_chart(bt: &Report, i: usize) -> anyhow::Result<String> {
    let axis = time_axis(bt);
    let px = |p: tradeloop_engine::fixed::Price| p.to_decimal().to_f64().unwrap_or(0.0);
    let line: Vec<(f64, f64)> = bt
        .prices
        .iter()
        .filter(|(_, p)| p[i].raw() > 0)
        .map(|(t, p)| (*t as f64 / 1e9, px(p[i])))
        .collect();
    let fills: Vec<(f64, f64, Side)> = bt
        .fills
        .iter()
        .filter(|f| f.instrument.get() == i)
        .map(|f| (f.ts_ns as f64 / 1e9, px(f.price), f.side))
        .collect();
    let values = line.iter().map(|p| p.1).chain(fills.iter().map(|f| f.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let caption = format!("{}: price and fills", bt.symbols[i]);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = time_chart(
            &root,
            &caption,
            &axis,
            padded(lo, hi),
            "price (quote currency)",
            10,
        )?;
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(LineSeries::new(line.iter().copied(), grey))
            .map_err(plot_err)?
            .label("mark (mid, else last trade)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
        let green = RGBColor(0, 150, 60);
        chart
            .draw_series(
                fills
                    .iter()
                    .filter(|f| f.2 == Side::Buy)
                    .map(|f| TriangleMarker::new((f.0, f.1), 5, green.filled())),
            )
            .map_err(plot_err)?
            .label("buy fill")
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, green.filled()));
        chart
            .draw_series(
                fills
                    .iter()
                    .filter(|f| f.2 == Side::Sell)
                    .map(|f| Circle::new((f.0, f.1), 4, RED.filled())),
            )
            .map_err(plot_err)?
            .label("sell fill")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
        legend(&mut chart)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: the summary table, the charts inline, the input that was not used.
fn html(bt: &Report, s: &Stats, charts: &[(String, String)]) -> String {
    let opt = |v: Option<f64>, pct: bool| {
        v.map_or_else(
            || "n/a".to_owned(),
            |v| {
                if pct {
                    format!("{:.1} %", v * 100.0)
                } else {
                    format!("{v:.2}")
                }
            },
        )
    };
    let dec =
        |v: Option<rust_decimal::Decimal>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
    let TimeAxis { t0, t1, .. } = time_axis(bt);
    let rows: Vec<(&str, String)> = vec![
        ("net PnL", s.net_pnl.to_string()),
        ("realised PnL (before fees)", s.realized.to_string()),
        ("unrealised PnL (final marks)", s.unrealized.to_string()),
        ("fees", s.fees.to_string()),
        ("max drawdown", s.max_drawdown.to_string()),
        ("round trips", s.round_trips.to_string()),
        ("win rate (round trips, after fees)", opt(s.win_rate, true)),
        (
            "average win / loss (after fees)",
            format!("{} / {}", dec(s.avg_win), dec(s.avg_loss)),
        ),
        ("expectancy (per round trip)", dec(s.expectancy)),
        ("profit factor", opt(s.profit_factor, false)),
        (
            "max consecutive losses",
            s.max_consecutive_losses.to_string(),
        ),
        (
            "average holding time",
            s.avg_holding_s
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} s")),
        ),
        (
            "exposure (time with a position open)",
            format!("{:.1} %", s.exposure * 100.0),
        ),
        ("turnover", s.turnover.to_string()),
        ("fills", bt.fills.len().to_string()),
        (
            "orders sent / denied",
            format!("{} / {}", bt.orders, bt.denied),
        ),
        (
            "Sharpe / Sortino (annualised)",
            match &s.ratios_note {
                Some(note) => format!("n/a: {note}"),
                None => format!(
                    "{} / {} over {} periods",
                    opt(s.sharpe, false),
                    opt(s.sortino, false),
                    s.periods
                ),
            },
        ),
        (
            "span",
            format!(
                "{} {} → {} {} UTC ({:.0} s)",
                iso_date((t0 * 1e9) as u64),
                clock(t0, false),
                iso_date((t1 * 1e9) as u64),
                clock(t1, false),
                t1 - t0
            ),
        ),
        (
            "input",
            format!(
                "{} frames/rows, {} market events{}",
                bt.events,
                bt.market_events,
                if bt.input_issues.total() > 0 {
                    format!(
                        ", {} not used{}",
                        bt.input_issues.total(),
                        if bt.input_issues.partial() {
                            " (PARTIAL)"
                        } else {
                            ""
                        }
                    )
                } else {
                    String::new()
                }
            ),
        ),
    ];
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tradeloop backtest: {}</title>\n<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}td.v{{text-align:right;font-family:monospace}}figure{{margin:1.5em 0}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>\n",
        esc(&bt.strategy.name)
    );
    let _ = writeln!(
        page,
        "<h1>Backtest: {}</h1>\n<p>Inputs: {}. Amounts in the instruments' settlement currency; PnL cross-check {}.</p>",
        esc(&bt.strategy.name),
        esc(&bt
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")),
        if s.pnl_check { "ok" } else { "MISMATCH" }
    );
    page.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    for (k, v) in rows {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td class=\"v\">{}</td></tr>",
            esc(k),
            esc(&v)
        );
    }
    page.push_str("</table>\n");
    if !bt.denials.is_empty() {
        page.push_str("<h2>Orders denied, by reason</h2>\n<table>\n");
        for (k, v) in &bt.denials {
            let _ = writeln!(page, "<tr><th>{}</th><td class=\"v\">{v}</td></tr>", esc(k));
        }
        page.push_str("</table>\n");
    }
    page.push_str("<h2>Charts</h2>\n");
    for (name, svg) in charts {
        let _ = writeln!(
            page,
            "<figure class=\"chart\" id=\"{}\">{}</figure>",
            esc(name.trim_end_matches(".svg")),
            svg.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                .trim()
        );
    }
    if bt.input_issues.total() > 0 {
        let _ = writeln!(
            page,
            "<h2>Input not used</h2>\n<pre>{}</pre>",
            esc(&bt.input_issues.describe())
        );
    }
    page.push_str("</body></html>\n");
    page
}

/// Writes the report's files into `dir`.
///
/// # Errors
/// If a chart cannot be drawn or a file written.
pub fn write(bt: &Report, stats: &Stats, dir: &std::path::Path) -> anyhow::Result<()> {
    for (name, text) in files(bt, stats)? {
        let path = dir.join(&name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
