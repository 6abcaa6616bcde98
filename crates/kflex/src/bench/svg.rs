//! The benchmark's SVG chart: grouped bars of each engine's ratio to native, one group per
//! structure × op × key stream, on a logarithmic axis (the interpreter sits one to two decades
//! below native), with a reference line at 1.0 (native speed) and a legend.

use std::fmt::Write as _;

use super::report::BenchResult;

const BAR_W: f64 = 9.0;
const GROUP_GAP: f64 = 12.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const PLOT_H: f64 = 300.0;
const LABEL_H: f64 = 180.0;
const COLORS: [&str; 6] = [
    "#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd",
];

/// Escapes text for XML character data and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The decade range `[10^lo, 10^hi]` covering every ratio and 1.0.
fn decades(results: &[BenchResult]) -> (i32, i32) {
    let ratios = results
        .iter()
        .map(|r| r.ratio_to_native)
        .filter(|r| *r > 0.0 && r.is_finite());
    let (min, max) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let lo = min.log10().floor() as i32;
    let mut hi = max.log10().ceil() as i32;
    if hi <= lo {
        hi = lo + 1;
    }
    // Leave headroom above native so bars near 1.0 do not touch the top.
    if hi == 0 {
        hi = 1;
    }
    (lo, hi)
}

/// Draws the chart of `results` with one bar colour per engine of `engines` (in legend order).
/// Every result becomes one `<rect class="bar">` with a `<title>` naming it.
pub fn chart(results: &[BenchResult], engines: &[String], title: &str) -> String {
    let mut groups: Vec<(&str, &str, &str)> = Vec::new();
    for r in results {
        let g = (r.structure.as_str(), r.op.as_str(), r.keys.as_str());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let per_group = engines.len().max(1) as f64 * BAR_W + GROUP_GAP;
    let plot_w = (groups.len().max(1) as f64 * per_group).max(360.0);
    let width = LEFT + plot_w + RIGHT;
    let height = TOP + PLOT_H + LABEL_H;
    let (lo, hi) = decades(results);
    let y_of = |ratio: f64| {
        let t = (ratio.log10() - f64::from(lo)) / f64::from(hi - lo);
        TOP + PLOT_H * (1.0 - t.clamp(0.0, 1.0))
    };
    let bottom = TOP + PLOT_H;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    // Y axis: a gridline and label per decade.
    for d in lo..=hi {
        let y = y_of(10f64.powi(d));
        let label = if d >= 0 {
            format!("{}", 10f64.powi(d))
        } else {
            format!("{:.*}", (-d) as usize, 10f64.powi(d))
        };
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">ratio to native (log scale, higher is better)</text>"#,
        TOP + PLOT_H / 2.0
    );
    // Bars.
    for (gi, g) in groups.iter().enumerate() {
        let gx = LEFT + GROUP_GAP / 2.0 + gi as f64 * per_group;
        for (ei, engine) in engines.iter().enumerate() {
            let Some(r) = results.iter().find(|r| {
                (r.structure.as_str(), r.op.as_str(), r.keys.as_str()) == *g && &r.engine == engine
            }) else {
                continue;
            };
            let x = gx + ei as f64 * BAR_W;
            let y = y_of(r.ratio_to_native);
            let _ = writeln!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {} {}: {:.3}x native ({:.1} ns/op)</title></rect>"#,
                BAR_W - 1.0,
                (bottom - y).max(0.0),
                COLORS[ei % COLORS.len()],
                escape(&r.structure),
                escape(&r.op),
                escape(&r.keys),
                escape(&r.engine),
                r.ratio_to_native,
                r.ns_per_op
            );
        }
        let lx = gx + engines.len() as f64 * BAR_W / 2.0;
        let _ = writeln!(
            s,
            r#"<text transform="translate({lx:.1} {:.1}) rotate(-60)" text-anchor="end">{} {} {}</text>"#,
            bottom + 10.0,
            escape(g.0),
            escape(g.1),
            escape(g.2)
        );
    }
    // Axes and the native line on top of the bars.
    let _ = writeln!(
        s,
        r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="black"/><line class="axis" x1="{LEFT}" y1="{bottom}" x2="{:.1}" y2="{bottom}" stroke="black"/>"#,
        LEFT + plot_w
    );
    let y1 = y_of(1.0);
    let _ = writeln!(
        s,
        r#"<line class="native" x1="{LEFT}" y1="{y1:.1}" x2="{:.1}" y2="{y1:.1}" stroke="black" stroke-dasharray="6 3"/><text x="{:.1}" y="{:.1}" text-anchor="end">native = 1.0</text>"#,
        LEFT + plot_w,
        LEFT + plot_w,
        y1 - 4.0
    );
    // Legend.
    let mut lx = LEFT;
    for (ei, engine) in engines.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect class="legend" x="{lx:.1}" y="30" width="10" height="10" fill="{}"/><text x="{:.1}" y="39">{}</text>"#,
            COLORS[ei % COLORS.len()],
            lx + 14.0,
            escape(engine)
        );
        lx += 24.0 + 7.0 * engine.len() as f64;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::sample;

    fn attr(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let start = tag.find(&key).unwrap() + key.len();
        let end = start + tag[start..].find('"').unwrap();
        tag[start..end].parse().unwrap()
    }

    #[test]
    fn one_bar_per_result_scaled_by_ratio() {
        let report = sample();
        let svg = chart(&report.results, &report.engines, "hash <test> & more");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("hash &lt;test&gt; &amp; more"));
        let bars: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<rect class=\"bar\""))
            .collect();
        assert_eq!(bars.len(), report.results.len());
        // Every element that opens is closed (a cheap well-formedness check).
        assert_eq!(
            svg.matches("<title>").count(),
            svg.matches("</title>").count()
        );
        let self_closed_rects = svg.matches("<rect").count() - svg.matches("</rect>").count();
        assert_eq!(
            self_closed_rects,
            1 + 3,
            "the background and one legend swatch per engine"
        );
        // The log axis spans 0.01 .. 10 here; heights are proportional to log distance from 0.01.
        let h = |b: &str| attr(b, "height");
        let native = bars.iter().find(|b| b.contains("zipf native:")).unwrap();
        let jit = bars.iter().find(|b| b.contains("kflex-jit:")).unwrap();
        let interp = bars.iter().find(|b| b.contains("kflex-interp:")).unwrap();
        assert!((h(native) - 200.0).abs() < 0.2, "native bar {}", h(native));
        let want_jit = 300.0 * (0.8f64.log10() + 2.0) / 3.0;
        assert!(
            (h(jit) - want_jit).abs() < 0.2,
            "jit bar {} vs {want_jit}",
            h(jit)
        );
        assert!(h(interp) < h(jit) && h(interp) > 0.0);
        // The native line sits exactly at the top of the native bars.
        let line = svg
            .lines()
            .find(|l| l.contains("class=\"native\""))
            .unwrap();
        assert!((attr(line, "y1") - attr(native, "y")).abs() < 0.2);
        assert_eq!(svg.matches("class=\"legend\"").count(), 3);
    }

    #[test]
    fn empty_results_still_draw_axes() {
        let svg = chart(&[], &["native".into()], "nothing");
        assert!(svg.contains("class=\"axis\"") && svg.contains("class=\"native\""));
        assert!(!svg.contains("class=\"bar\""));
    }
}
