//! The result table every benchmark prints: what, ours, peer, ratio (ours / peer).

/// Whether a bigger or a smaller value is better (for the reader; the ratio is always ours/peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency.
    Lower,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, with its unit.
    pub what: String,
    /// Rill's value.
    pub ours: Option<f64>,
    /// The peer broker's value, when a peer ran.
    pub peer: Option<f64>,
    /// Which direction is better.
    pub better: Better,
}

/// The rows of one benchmark run.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Table {
    /// Append a row.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        ours: Option<f64>,
        peer: Option<f64>,
        better: Better,
    ) {
        self.rows.push(Row {
            what: what.into(),
            ours,
            peer,
            better,
        });
    }

    /// The table as Markdown, `peer_name` heading the peer column.
    pub fn markdown(&self, peer_name: &str) -> String {
        let mut s = format!(
            "| what | ours (rill) | peer ({peer_name}) | ratio ours/peer |\n|---|---:|---:|---:|\n"
        );
        for r in &self.rows {
            let ratio = match (r.ours, r.peer) {
                (Some(o), Some(p)) if p > 0.0 => {
                    let hint = match r.better {
                        Better::Higher => "",
                        Better::Lower => " (lower is better)",
                    };
                    format!("{:.2}x{hint}", o / p)
                }
                _ => "-".to_string(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.what,
                cell(r.ours),
                cell(r.peer),
                ratio
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_ours_over_peer_and_missing_peer_is_a_dash() {
        let mut t = Table::default();
        t.push(
            "produce records/s",
            Some(2000.0),
            Some(1000.0),
            Better::Higher,
        );
        t.push("p99 ms", Some(5.0), None, Better::Lower);
        let md = t.markdown("tansu");
        assert!(
            md.contains("| produce records/s | 2000 | 1000 | 2.00x |"),
            "{md}"
        );
        assert!(md.contains("| p99 ms | 5.00 | - | - |"), "{md}");
    }
}
