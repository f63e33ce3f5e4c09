//! Models and fields served by the fake, with Odoo's technical names, types,
//! labels, defaults and `_order`s (Odoo 17 / 19 `sale`, `account`, `product`,
//! `hr` addons, trimmed to what a mirror reads).

/// Field types, named as `fields_get` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Char,
    Text,
    Html,
    Boolean,
    Integer,
    Float,
    Monetary,
    Selection,
    Date,
    Datetime,
    Many2one,
    One2many,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Char => "char",
            Ty::Text => "text",
            Ty::Html => "html",
            Ty::Boolean => "boolean",
            Ty::Integer => "integer",
            Ty::Float => "float",
            Ty::Monetary => "monetary",
            Ty::Selection => "selection",
            Ty::Date => "date",
            Ty::Datetime => "datetime",
            Ty::Many2one => "many2one",
            Ty::One2many => "one2many",
        }
    }
}

/// What the database does to referencing rows when a target row is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDelete {
    SetNull,
    Restrict,
    Cascade,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Default {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
    /// `fields.Datetime.now` (whole seconds).
    Now,
}

#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    pub(crate) string: &'static str,
    pub(crate) required: bool,
    pub(crate) readonly: bool,
    pub(crate) store: bool,
    /// Computed by the fake; values given in create/write are ignored.
    pub(crate) computed: bool,
    pub(crate) relation: Option<&'static str>,
    /// For one2many: the many2one on the comodel pointing back.
    pub(crate) inverse: Option<&'static str>,
    pub(crate) ondelete: OnDelete,
    pub(crate) selection: Vec<(&'static str, &'static str)>,
    pub(crate) digits: Option<i32>,
    pub(crate) default: Default,
}

impl Field {
    fn new(name: &'static str, ty: Ty, string: &'static str) -> Field {
        Field {
            name,
            ty,
            string,
            required: false,
            readonly: false,
            store: true,
            computed: false,
            relation: None,
            inverse: None,
            ondelete: OnDelete::SetNull,
            selection: Vec::new(),
            digits: if ty == Ty::Monetary { Some(2) } else { None },
            default: Default::None,
        }
    }
    fn required(mut self) -> Field {
        self.required = true;
        // Odoo: a required many2one defaults to ondelete='restrict'.
        if self.ty == Ty::Many2one && self.ondelete == OnDelete::SetNull {
            self.ondelete = OnDelete::Restrict;
        }
        self
    }
    fn computed(mut self, store: bool) -> Field {
        self.computed = true;
        self.readonly = true;
        self.store = store;
        self
    }
    fn default(mut self, d: Default) -> Field {
        self.default = d;
        self
    }
    fn digits(mut self, d: i32) -> Field {
        self.digits = Some(d);
        self
    }
    fn ondelete(mut self, o: OnDelete) -> Field {
        self.ondelete = o;
        self
    }
    fn selection(mut self, s: &[(&'static str, &'static str)]) -> Field {
        self.selection = s.to_vec();
        self
    }

    pub(crate) fn is_magic(&self) -> bool {
        matches!(
            self.name,
            "id" | "create_date" | "write_date" | "display_name"
        )
    }
}

fn char(n: &'static str, s: &'static str) -> Field {
    Field::new(n, Ty::Char, s)
}
fn m2o(n: &'static str, s: &'static str, rel: &'static str) -> Field {
    let mut f = Field::new(n, Ty::Many2one, s);
    f.relation = Some(rel);
    f
}
fn o2m(n: &'static str, s: &'static str, rel: &'static str, inverse: &'static str) -> Field {
    let mut f = Field::new(n, Ty::One2many, s);
    f.relation = Some(rel);
    f.inverse = Some(inverse);
    f.store = false;
    f
}
fn active() -> Field {
    Field::new("active", Ty::Boolean, "Active").default(Default::Bool(true))
}

#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) fields: Vec<Field>,
    /// `_order`.
    pub(crate) order: &'static str,
}

impl Model {
    fn new(name: &'static str, description: &'static str, order: &'static str) -> Model {
        let mut id = Field::new("id", Ty::Integer, "ID");
        id.readonly = true;
        Model {
            name,
            description,
            fields: vec![id],
            order,
        }
    }
    fn with(mut self, fields: Vec<Field>) -> Model {
        self.fields.extend(fields);
        // Magic fields every Odoo model has (create_uid/write_uid left out).
        let mut dn = char("display_name", "Display Name").computed(false);
        dn.readonly = true;
        self.fields.push(dn);
        for (n, s) in [
            ("create_date", "Created on"),
            ("write_date", "Last Updated on"),
        ] {
            let mut f = Field::new(n, Ty::Datetime, s);
            f.readonly = true;
            self.fields.push(f);
        }
        self
    }

    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub(crate) fn has_active(&self) -> bool {
        self.field("active").is_some()
    }

    pub(crate) fn has_parent(&self) -> bool {
        self.field("parent_id")
            .is_some_and(|f| f.relation == Some(self.name))
    }

    /// The SQL table name (`sale.order` → `sale_order`).
    pub(crate) fn table(&self) -> String {
        self.name.replace('.', "_")
    }
}

/// All models, for Odoo major `version`; `tag` adds `x_nas_sync_uuid` to the
/// sale models (a Studio/custom field the mirror can tag its creates with).
pub(crate) fn models(version: u32, tag: bool) -> Vec<Model> {
    let product_types: &[(&str, &str)] = if version >= 18 {
        &[
            ("consu", "Goods"),
            ("service", "Service"),
            ("combo", "Combo"),
        ]
    } else {
        &[
            ("consu", "Consumable"),
            ("service", "Service"),
            ("product", "Storable Product"),
        ]
    };
    let tag_field = || char("x_nas_sync_uuid", "NAS sync UUID");
    let mut order_fields = vec![
        char("name", "Order Reference")
            .required()
            .default(Default::Str("New")),
        m2o("partner_id", "Customer", "res.partner").required(),
        Field::new("date_order", Ty::Datetime, "Order Date")
            .required()
            .default(Default::Now),
        Field::new("state", Ty::Selection, "Status")
            .selection(&[
                ("draft", "Quotation"),
                ("sent", "Quotation Sent"),
                ("sale", "Sales Order"),
                ("cancel", "Cancelled"),
            ])
            .default(Default::Str("draft")),
        Field::new("amount_total", Ty::Monetary, "Total").computed(true),
        char("client_order_ref", "Customer Reference"),
        Field::new("note", Ty::Html, "Terms and conditions"),
        o2m("order_line", "Order Lines", "sale.order.line", "order_id"),
    ];
    let mut line_fields = vec![
        m2o("order_id", "Order Reference", "sale.order")
            .required()
            .ondelete(OnDelete::Cascade),
        m2o("product_id", "Product", "product.product").ondelete(OnDelete::Restrict),
        Field::new("name", Ty::Text, "Description"),
        Field::new("product_uom_qty", Ty::Float, "Quantity")
            .digits(3)
            .default(Default::Float(1.0)),
        Field::new("price_unit", Ty::Float, "Unit Price").digits(2),
        Field::new("price_subtotal", Ty::Monetary, "Subtotal").computed(true),
    ];
    if tag {
        order_fields.push(tag_field());
        line_fields.push(tag_field());
    }
    vec![
        Model::new("res.partner", "Contact", "complete_name asc, id desc").with(vec![
            char("name", "Name").required(),
            char("email", "Email"),
            char("phone", "Phone"),
            Field::new("is_company", Ty::Boolean, "Is a Company").default(Default::Bool(false)),
            active(),
            m2o("parent_id", "Related Company", "res.partner"),
            Field::new("customer_rank", Ty::Integer, "Customer Rank").default(Default::Int(0)),
            char("street", "Street"),
            char("city", "City"),
            char("zip", "Zip"),
            Field::new("comment", Ty::Html, "Notes"),
        ]),
        Model::new("product.category", "Product Category", "complete_name, id")
            .with(vec![char("name", "Name").required()]),
        Model::new(
            "product.product",
            "Product Variant",
            "default_code, name, id",
        )
        .with(vec![
            char("name", "Name").required(),
            char("default_code", "Internal Reference"),
            char("barcode", "Barcode"),
            Field::new("list_price", Ty::Float, "Sales Price")
                .digits(2)
                .default(Default::Float(1.0)),
            active(),
            Field::new("type", Ty::Selection, "Product Type")
                .selection(product_types)
                .required()
                .default(Default::Str("consu")),
            m2o("categ_id", "Product Category", "product.category")
                .required()
                .default(Default::Int(1)),
        ]),
        Model::new("sale.order", "Sales Order", "date_order desc, id desc").with(order_fields),
        Model::new("sale.order.line", "Sales Order Line", "order_id, id").with(line_fields),
        Model::new(
            "account.move",
            "Journal Entry",
            "invoice_date desc, name desc, id desc",
        )
        .with(vec![
            char("name", "Number").default(Default::Str("/")),
            m2o("partner_id", "Partner", "res.partner").ondelete(OnDelete::Restrict),
            Field::new("move_type", Ty::Selection, "Type")
                .selection(&[
                    ("entry", "Journal Entry"),
                    ("out_invoice", "Customer Invoice"),
                    ("out_refund", "Customer Credit Note"),
                    ("in_invoice", "Vendor Bill"),
                    ("in_refund", "Vendor Credit Note"),
                    ("out_receipt", "Sales Receipt"),
                    ("in_receipt", "Purchase Receipt"),
                ])
                .required()
                .default(Default::Str("entry")),
            Field::new("state", Ty::Selection, "Status")
                .selection(&[
                    ("draft", "Draft"),
                    ("posted", "Posted"),
                    ("cancel", "Cancelled"),
                ])
                .required()
                .default(Default::Str("draft")),
            Field::new("invoice_date", Ty::Date, "Invoice/Bill Date"),
            Field::new("amount_total", Ty::Monetary, "Total"),
        ]),
        Model::new("hr.department", "Department", "name, id")
            .with(vec![char("name", "Department Name").required(), active()]),
        Model::new("hr.employee", "Employee", "name, id").with(vec![
            char("name", "Employee Name").required(),
            char("work_email", "Work Email"),
            char("job_title", "Job Title"),
            m2o("department_id", "Department", "hr.department"),
            active(),
        ]),
    ]
}
