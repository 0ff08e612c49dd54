//! rill-devices: MQTT device fleet simulator (see issue 5). Not yet built.
fn main() {
    eprintln!("rill-devices: the MQTT fleet simulator arrives with the MQTT front end");
    std::process::exit(2);
}
