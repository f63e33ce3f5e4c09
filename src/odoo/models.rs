//! The models mirrored by default and the fields read from each. The columns of a
//! default model's table are fixed here (Odoo's own field names), so a Flutter app can
//! ship one SQLite schema whatever the Odoo version; a field an Odoo server lacks
//! stays NULL. Other models take their columns from `fields_get`.

use super::field_type::FieldType::{self, *};

/// The models a connection mirrors when it names none.
pub const DEFAULT_MODELS: [&str; 6] = [
    "res.partner",
    "product.product",
    "sale.order",
    "sale.order.line",
    "account.move",
    "hr.employee",
];

/// A default model's fields, with the type they are stored as.
pub fn curated(model: &str) -> Option<&'static [(&'static str, FieldType)]> {
    let fields: &'static [(&'static str, FieldType)] = match model {
        "res.partner" => &[
            ("name", Char),
            ("email", Char),
            ("phone", Char),
            ("mobile", Char),
            ("is_company", Boolean),
            ("active", Boolean),
            ("parent_id", Many2one),
            ("street", Char),
            ("street2", Char),
            ("city", Char),
            ("zip", Char),
            ("country_id", Many2one),
            ("vat", Char),
            ("ref", Char),
            ("customer_rank", Integer),
            ("supplier_rank", Integer),
            ("company_id", Many2one),
            ("comment", Text),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        "product.product" => &[
            ("name", Char),
            ("default_code", Char),
            ("barcode", Char),
            ("list_price", Float),
            ("standard_price", Float),
            ("active", Boolean),
            ("type", Selection),
            ("categ_id", Many2one),
            ("uom_id", Many2one),
            ("sale_ok", Boolean),
            ("product_tmpl_id", Many2one),
            ("company_id", Many2one),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        "sale.order" => &[
            ("name", Char),
            ("partner_id", Many2one),
            ("date_order", Datetime),
            ("state", Selection),
            ("amount_untaxed", Monetary),
            ("amount_tax", Monetary),
            ("amount_total", Monetary),
            ("currency_id", Many2one),
            ("client_order_ref", Char),
            ("note", Text),
            ("user_id", Many2one),
            ("company_id", Many2one),
            ("order_line", One2many),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        "sale.order.line" => &[
            ("order_id", Many2one),
            ("product_id", Many2one),
            ("name", Text),
            ("product_uom_qty", Float),
            ("price_unit", Float),
            ("discount", Float),
            ("price_subtotal", Monetary),
            ("price_total", Monetary),
            ("sequence", Integer),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        "account.move" => &[
            ("name", Char),
            ("partner_id", Many2one),
            ("move_type", Selection),
            ("state", Selection),
            ("ref", Char),
            ("invoice_date", Date),
            ("invoice_date_due", Date),
            ("amount_untaxed", Monetary),
            ("amount_total", Monetary),
            ("amount_residual", Monetary),
            ("payment_state", Selection),
            ("currency_id", Many2one),
            ("company_id", Many2one),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        "hr.employee" => &[
            ("name", Char),
            ("work_email", Char),
            ("work_phone", Char),
            ("mobile_phone", Char),
            ("job_title", Char),
            ("department_id", Many2one),
            ("parent_id", Many2one),
            ("active", Boolean),
            ("company_id", Many2one),
            ("create_date", Datetime),
            ("write_date", Datetime),
        ],
        _ => return None,
    };
    Some(fields)
}

/// Where a default model's many2one fields point (for write-back references).
pub fn curated_relation(model: &str, field: &str) -> Option<&'static str> {
    Some(match (model, field) {
        ("res.partner", "parent_id") => "res.partner",
        ("sale.order", "partner_id") | ("account.move", "partner_id") => "res.partner",
        ("sale.order.line", "order_id") => "sale.order",
        ("sale.order.line", "product_id") => "product.product",
        ("hr.employee", "parent_id") => "hr.employee",
        _ => return None,
    })
}

/// Fields a device may set on a default model when it writes back (Odoo computes the
/// rest: amounts, names from sequences, states through actions).
pub fn curated_writable(model: &str) -> Option<&'static [&'static str]> {
    Some(match model {
        "sale.order" => &["partner_id", "client_order_ref", "note", "date_order"],
        "sale.order.line" => &[
            "order_id",
            "product_id",
            "name",
            "product_uom_qty",
            "price_unit",
            "discount",
            "sequence",
        ],
        "res.partner" => &[
            "name",
            "email",
            "phone",
            "mobile",
            "is_company",
            "parent_id",
            "street",
            "street2",
            "city",
            "zip",
            "vat",
            "ref",
            "comment",
        ],
        _ => return None,
    })
}
