//! Free loopback ports for servers that cannot bind port 0 themselves (redis-server, weed).

use std::net::TcpListener;

/// A port that was free a moment ago. `with_bus_offset` also requires `port + offset` to be
/// free (Redis Cluster's bus port is the client port + 10000).
pub fn free_port(with_bus_offset: Option<u16>) -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        match with_bus_offset {
            None => return port,
            Some(offset) => {
                let Some(bus) = port.checked_add(offset) else {
                    continue;
                };
                if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
                    return port;
                }
            }
        }
    }
    panic!("no free loopback port found");
}
