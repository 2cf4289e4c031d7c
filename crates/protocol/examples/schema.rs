//! Prints the protocol's JSON Schemas (docs/protocol.schema.json).

fn main() {
    let text = serde_json::to_string_pretty(&sluice_protocol::schema::all()).unwrap_or_default();
    println!("{text}");
}
