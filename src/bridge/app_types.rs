//! `app_type`: which models a BridgeCore app syncs. The seeds' four (`sales_app`,
//! `delivery_app`, `warehouse_app`, `manager_app`) list Odoo models; `store_app` is
//! what the store role reads and `store_manager_app` every table the caller reads.
//! `NAS_SYNC_APP_TYPES` adds or replaces entries (`name=model,table;name2=...`). A
//! name with a dot is an Odoo model (`sale.order` → `odoo_sale_order`), any other a
//! table. Models that are not mirrored here are skipped, not an error.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::auth::Role;
use crate::odoo::schema::table_name;
use crate::sync::registry::{Registry, Table};

/// What an app type names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Models {
    /// These models or tables.
    Listed(Vec<String>),
    /// Every table the store role reads.
    StoreReadable,
    /// Every table the caller reads.
    AllReadable,
}

/// The app types this server knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppTypes(BTreeMap<String, Models>);

impl Default for AppTypes {
    fn default() -> Self {
        let listed =
            |models: &[&str]| Models::Listed(models.iter().map(ToString::to_string).collect());
        AppTypes(BTreeMap::from([
            (
                "sales_app".to_string(),
                listed(&[
                    "sale.order",
                    "sale.order.line",
                    "res.partner",
                    "product.template",
                    "product.product",
                ]),
            ),
            (
                "delivery_app".to_string(),
                listed(&[
                    "stock.picking",
                    "stock.move",
                    "stock.move.line",
                    "res.partner",
                ]),
            ),
            (
                "warehouse_app".to_string(),
                listed(&[
                    "stock.picking",
                    "stock.move",
                    "stock.quant",
                    "product.product",
                    "stock.location",
                ]),
            ),
            (
                "manager_app".to_string(),
                listed(&[
                    "sale.order",
                    "purchase.order",
                    "account.move",
                    "hr.expense",
                    "project.project",
                ]),
            ),
            ("store_app".to_string(), Models::StoreReadable),
            ("store_manager_app".to_string(), Models::AllReadable),
        ]))
    }
}

impl AppTypes {
    /// The defaults, with `spec` (`NAS_SYNC_APP_TYPES`) applied over them.
    pub fn parse(spec: &str) -> anyhow::Result<AppTypes> {
        let mut types = AppTypes::default();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, list) = entry.split_once('=').with_context(|| {
                format!("NAS_SYNC_APP_TYPES: '{entry}' is not name=model,model")
            })?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("NAS_SYNC_APP_TYPES: '{name}' is not an app type name (letters, digits, _)");
            }
            let models: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            if models.is_empty() {
                bail!("NAS_SYNC_APP_TYPES: '{name}' names no model");
            }
            types.0.insert(name.to_string(), Models::Listed(models));
        }
        Ok(types)
    }

    /// The known names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    pub fn get(&self, app_type: &str) -> Option<&Models> {
        self.0.get(app_type)
    }
}

/// The table a model name maps to.
pub fn model_table(model: &str) -> String {
    if model.contains('.') {
        table_name(model)
    } else {
        model.to_string()
    }
}

/// The tables `models` selects that exist here and `role` may read.
pub fn tables<'r>(registry: &'r Registry, models: &Models, role: Role) -> Vec<&'r Table> {
    match models {
        Models::StoreReadable => registry
            .readable_by(Role::Store)
            .filter(|t| t.can_read(role))
            .collect(),
        Models::AllReadable => registry.readable_by(role).collect(),
        Models::Listed(names) => {
            let mut out: Vec<&Table> = Vec::new();
            for name in names {
                if let Some(t) = registry.get(&model_table(name))
                    && t.can_read(role)
                    && !out.iter().any(|o| o.name == t.name)
                {
                    out.push(t);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_include_the_seeds_and_the_store_apps() {
        let t = AppTypes::default();
        for name in [
            "sales_app",
            "delivery_app",
            "warehouse_app",
            "manager_app",
            "store_app",
            "store_manager_app",
        ] {
            assert!(t.get(name).is_some(), "{name}");
        }
        assert_eq!(t.get("store_app"), Some(&Models::StoreReadable));
    }

    #[test]
    fn the_setting_adds_and_replaces() {
        let t = AppTypes::parse("field_app=forms,submissions; sales_app=res.partner").unwrap();
        assert_eq!(
            t.get("field_app"),
            Some(&Models::Listed(vec!["forms".into(), "submissions".into()]))
        );
        assert_eq!(
            t.get("sales_app"),
            Some(&Models::Listed(vec!["res.partner".into()]))
        );
        assert!(t.get("delivery_app").is_some(), "the other defaults stay");
        assert!(AppTypes::parse("bad").is_err());
        assert!(AppTypes::parse("x=").is_err());
        assert!(AppTypes::parse("no spaces=forms").is_err());
    }

    #[test]
    fn models_map_to_tables() {
        assert_eq!(model_table("sale.order.line"), "odoo_sale_order_line");
        assert_eq!(model_table("forms"), "forms");
    }
}
