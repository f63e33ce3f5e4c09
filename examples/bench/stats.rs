//! Percentiles over a sorted `Vec<f64>` (nearest rank), and a little randomness that
//! needs no extra dependency.

use serde_json::{Value, json};

/// Summary of a sample (milliseconds, rows/s, ... whatever was measured).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    pub fn of(mut values: Vec<f64>) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Summary {
            n,
            min: values[0],
            p50: percentile(&values, 0.50),
            p90: percentile(&values, 0.90),
            p99: percentile(&values, 0.99),
            max: values[n - 1],
            mean: values.iter().sum::<f64>() / n as f64,
        }
    }

    pub fn to_json(self) -> Value {
        json!({"n": self.n, "min": self.min, "p50": self.p50, "p90": self.p90,
               "p99": self.p99, "max": self.max, "mean": self.mean})
    }
}

/// Nearest-rank percentile of sorted values, `p` in 0..=1.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    Summary::of(values.to_vec()).p50
}

/// A random number below `n` (uuid v4 randomness; plenty for phases and offsets).
pub fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as u64
}
