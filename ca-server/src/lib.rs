//! The TPA certificate authority: signing, storage, audit, HTTP.
