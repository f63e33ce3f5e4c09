//! `FieldType`: an Odoo field's type as far as the mirror cares, read from
//! `fields_get`; shared by the DDL (`schema`) and the curated model lists (`models`).

use serde::{Deserialize, Serialize};

/// An Odoo field type, as far as the mirror cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Char,
    Text,
    Html,
    Selection,
    Reference,
    Integer,
    Float,
    Monetary,
    Boolean,
    Date,
    Datetime,
    Many2one,
    One2many,
    Many2many,
    Json,
}

impl FieldType {
    /// From `fields_get`'s `type`; `None` for types not mirrored (binary, ...).
    pub fn parse(odoo_type: &str) -> Option<FieldType> {
        use FieldType::*;
        Some(match odoo_type {
            "char" => Char,
            "text" => Text,
            "html" => Html,
            "selection" => Selection,
            "reference" | "many2one_reference" => Reference,
            "integer" => Integer,
            "float" => Float,
            "monetary" => Monetary,
            "boolean" => Boolean,
            "date" => Date,
            "datetime" => Datetime,
            "many2one" => Many2one,
            "one2many" => One2many,
            "many2many" => Many2many,
            "json" | "properties" => Json,
            _ => return None,
        })
    }

    pub(super) fn sql_type(self) -> &'static str {
        use FieldType::*;
        match self {
            Char | Text | Html | Selection | Reference => "text",
            Integer | Many2one => "bigint",
            Float | Monetary => "numeric",
            Boolean => "boolean",
            Date => "date",
            Datetime => "timestamptz",
            One2many | Many2many => "bigint[]",
            Json => "jsonb",
        }
    }
}
