//! The NotebookValidationJob controller: fetch the NVJ's pods, [`decide::decide`], apply the
//! plan (delete and create pods, write status with server-side apply as `nvj-validator`,
//! publish Events).

pub mod decide;
pub mod pod;
pub mod reconcile;
pub mod spec_check;
