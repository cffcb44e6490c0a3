//! Integration tests of `tpa-bastion` in the style of russh's
//! `tests/test_server_cert.rs`: the bastion on 127.0.0.1 port 0, certificates
//! minted here by a test CA, a russh client. Issue 6.

mod authentication;
mod forwarding;
mod helpers;
mod live;
mod openssh;
