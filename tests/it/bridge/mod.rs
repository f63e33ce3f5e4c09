//! Tests of BridgeCore's routes (src/bridge/).

mod bridgecore;
mod offline_push;
mod package_cycle;
mod replay;
mod tenant_auth;
