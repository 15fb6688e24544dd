//! The NotebookValidationJob controller: fetch the NVJ's pods, [`decide::decide`], apply the
//! plan (write status with server-side apply as `nvj-validator`, conditioned on the version the
//! decision was made from; then delete and create pods; publish Events).

pub mod decide;
pub mod pod;
pub mod pod_status;
pub mod reconcile;
pub mod spec_check;
