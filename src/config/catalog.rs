//! The built-in price catalog (`prices.toml`, compiled into the binary): list prices per model,
//! with their source and date, under the operator's `[pricing."MODEL"]` rows.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::RawPrice;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub meta: Meta,
    pub models: BTreeMap<String, RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub source: String,
    pub date: String,
}

const TEXT: &str = include_str!("prices.toml");

/// The catalog. It is part of the binary and tested, so it always parses.
pub fn catalog() -> Catalog {
    toml::from_str(TEXT).expect("src/config/prices.toml is valid (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_every_price_is_sane() {
        let c = catalog();
        assert!(c.meta.date.len() == 10 && !c.meta.source.is_empty());
        assert!(c.models.len() >= 20);
        for (model, p) in &c.models {
            let ok = |v: f64| v.is_finite() && (0.0..1000.0).contains(&v);
            assert!(ok(p.input_per_mtok) && ok(p.output_per_mtok), "{model}");
            if let Some(cached) = p.cached_input_per_mtok {
                assert!(ok(cached) && cached <= p.input_per_mtok, "{model}");
            }
        }
    }
}
