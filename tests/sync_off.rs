//! `sync_writes off`: commits are not fsynced, but a process crash still loses nothing
//! acknowledged (the data is in the kernel's page cache), and the periodic flush runs.

mod common;

use common::{get, request, wait_until, Server};
use std::time::Duration;

#[test]
fn acknowledged_writes_survive_kill_9_with_sync_writes_off() {
    let mut server = Server::start(&[("sync_writes", "off"), ("sync_interval", "200ms")]);
    for i in 0..200 {
        let r = request(
            server.addr(),
            "POST",
            &format!("/put?key=s{i}"),
            format!("v{i}").as_bytes(),
        );
        assert_eq!(r.status, 200);
    }
    server.kill_all();
    server.restart();
    for i in 0..200 {
        let r = get(server.addr(), &format!("/get?key=s{i}"));
        assert_eq!(r.status, 200, "key s{i}");
        assert_eq!(r.text(), format!("v{i}"));
    }
    // The daemon keeps serving across several flush intervals.
    assert!(wait_until(Duration::from_secs(2), || {
        request(server.addr(), "GET", "/put?key=late&val=1", b"").status == 200
            && get(server.addr(), "/get?key=late").status == 200
    }));
}
