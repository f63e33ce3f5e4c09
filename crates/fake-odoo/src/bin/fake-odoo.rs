//! The fake Odoo as a process, for scripts (scripts/fuzz-api.sh): serves Odoo 17's
//! external API with the default options (database `odoo`, login `bot`, API key
//! `bot-api-key`) and a few partners and products, prints its URL on one line, and
//! runs until killed.

use fake_odoo::{FakeOdoo, FakeOptions};
use serde_json::json;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async {
        let fake = FakeOdoo::start(FakeOptions::default()).await;
        for i in 0..5 {
            fake.insert(
                "res.partner",
                json!({"name": format!("Partner {i}"), "is_company": i == 0}),
            );
            fake.insert(
                "product.product",
                json!({"name": format!("Product {i}"), "list_price": 1.5 + f64::from(i)}),
            );
        }
        println!("{}", fake.url);
        std::future::pending::<()>().await;
    });
}
