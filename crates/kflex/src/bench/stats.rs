//! Summary statistics of the benchmark: medians of repetitions, ratios to native, and each
//! engine's geometric-mean and worst ratio.

use std::collections::BTreeMap;

/// The median of `xs` (the mean of the middle two for an even count); `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The time of a phase measured several times, robust to interruptions: for each batch the
/// median of its times over the repetitions (`reps[r][b]` is batch `b` of repetition `r`; every
/// repetition does the same work batch for batch), summed over the batches. A preemption or
/// interrupt inflates one batch of one repetition and drops out of that batch's median, where it
/// would stay in the median of whole-phase totals whenever every repetition was hit somewhere.
/// `None` when there is no repetition or their batch counts differ.
pub fn batchwise_median(reps: &[Vec<f64>]) -> Option<f64> {
    let batches = reps.first()?.len();
    if reps.iter().any(|r| r.len() != batches) {
        return None;
    }
    let mut column = Vec::with_capacity(reps.len());
    let mut total = 0.0;
    for b in 0..batches {
        column.clear();
        column.extend(reps.iter().map(|r| r[b]));
        total += median(&column)?;
    }
    Some(total)
}

/// The geometric mean of positive values; `None` when empty or when a value is not positive
/// and finite.
pub fn geomean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
        return None;
    }
    let log_sum: f64 = xs.iter().map(|x| x.ln()).sum();
    Some((log_sum / xs.len() as f64).exp())
}

/// One engine's summary over all its results.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineSummary {
    /// Geometric mean of the ratios to native.
    pub geomean_ratio: f64,
    /// The lowest ratio to native.
    pub worst_ratio: f64,
    /// Number of results summarised.
    pub results: usize,
}

/// Summarises `(engine, ratio)` pairs per engine (engines in name order); pairs with a ratio
/// that is not positive and finite are skipped.
pub fn summarise<'a>(
    ratios: impl IntoIterator<Item = (&'a str, f64)>,
) -> BTreeMap<String, EngineSummary> {
    let mut by_engine: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (engine, r) in ratios {
        if r > 0.0 && r.is_finite() {
            by_engine.entry(engine.to_string()).or_default().push(r);
        }
    }
    by_engine
        .into_iter()
        .filter_map(|(engine, rs)| {
            let geomean_ratio = geomean(&rs)?;
            let worst_ratio = rs.iter().copied().fold(f64::INFINITY, f64::min);
            Some((
                engine,
                EngineSummary {
                    geomean_ratio,
                    worst_ratio,
                    results: rs.len(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn batchwise_median_drops_an_interrupted_batch() {
        // Three repetitions of three batches; each repetition was interrupted once (+1000), in a
        // different batch, so every whole-phase total is inflated but no batch median is.
        let reps = vec![
            vec![1010.0, 20.0, 30.0],
            vec![10.0, 1020.0, 31.0],
            vec![11.0, 21.0, 1030.0],
        ];
        assert_eq!(batchwise_median(&reps), Some(11.0 + 21.0 + 31.0));
        let totals: Vec<f64> = reps.iter().map(|r| r.iter().sum()).collect();
        assert!(median(&totals).unwrap() > 1000.0);
        assert_eq!(batchwise_median(&reps[..1]), Some(1060.0));
        assert_eq!(batchwise_median(&[]), None);
        assert_eq!(batchwise_median(&[vec![1.0], vec![1.0, 2.0]]), None);
    }

    #[test]
    fn geomean_is_the_nth_root_of_the_product() {
        assert_eq!(geomean(&[]), None);
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert!((geomean(&[0.5, 2.0, 1.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((geomean(&[1.0, 10.0, 100.0]).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(geomean(&[1.0, 0.0]), None);
        assert_eq!(geomean(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn summary_per_engine_has_geomean_and_worst() {
        let s = summarise([
            ("kflex-jit", 0.9),
            ("native", 1.0),
            ("kflex-jit", 1.1),
            ("kflex-interp", 0.05),
            ("kflex-jit", 0.81),
            ("kflex-interp", 0.2),
            ("broken", f64::NAN),
        ]);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["kflex-interp", "kflex-jit", "native"]
        );
        let jit = s["kflex-jit"];
        assert_eq!(jit.results, 3);
        assert_eq!(jit.worst_ratio, 0.81);
        assert!((jit.geomean_ratio - (0.9f64 * 1.1 * 0.81).cbrt()).abs() < 1e-12);
        assert!((s["kflex-interp"].geomean_ratio - 0.1).abs() < 1e-12);
        assert_eq!(s["native"].geomean_ratio, 1.0);
    }
}
