//! Samples gathered at scrape time, grouped into families (one HELP and TYPE line each)
//! and encoded by `prometheus-client`, which owns the text format (escaping, `_total`
//! suffixes, `# EOF`).

use std::collections::HashMap;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A sample's labels, in the order they are printed.
pub type Labels = Vec<(&'static str, String)>;

struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

/// The families of one scrape, in the order they were first used.
#[derive(Default)]
pub struct MetricFamilies {
    families: Vec<Family>,
    index: HashMap<&'static str, usize>,
}

impl MetricFamilies {
    /// A counter sample; `name` without the `_total` suffix, which the encoder adds.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: f64) {
        self.push(name, help, MetricType::Counter, labels, value);
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: f64) {
        self.push(name, help, MetricType::Gauge, labels, value);
    }

    fn push(&mut self, name: &'static str, help: &'static str, kind: MetricType, labels: &Labels, value: f64) {
        let i = *self.index.entry(name).or_insert_with(|| {
            self.families.push(Family {
                name,
                help,
                kind,
                samples: Vec::new(),
            });
            self.families.len() - 1
        });
        self.families[i].samples.push((labels.clone(), value));
    }

    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, value) in &f.samples {
                let sample = metric.encode_family(labels)?;
                match f.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// `labels` with one more.
pub fn with(labels: &Labels, key: &'static str, value: impl ToString) -> Labels {
    let mut l = labels.clone();
    l.push((key, value.to_string()));
    l
}

#[cfg(test)]
mod tests {
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let mut f = MetricFamilies::default();
            let a: Labels = vec![("job_id", "j\"1".into()), ("vertex", "src".into())];
            f.counter("weir_records_in", "Records taken in.", &a, 5.0);
            f.gauge("weir_watermark_milliseconds", "Current watermark.", &a, 1.5e12);
            f.counter("weir_records_in", "Records taken in.", &with(&a, "subtask", 1), 7.0);
            f.encode(&mut encoder)
        }
    }

    #[test]
    fn families_print_once_with_all_their_samples_and_escaped_labels() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Two));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(text.matches("# TYPE weir_records_in counter").count(), 1, "{text}");
        assert!(
            text.contains(r#"weir_records_in_total{job_id="j\"1",vertex="src"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_records_in_total{job_id="j\"1",vertex="src",subtask="1"} 7"#),
            "{text}"
        );
        assert!(text.contains("# TYPE weir_watermark_milliseconds gauge"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
