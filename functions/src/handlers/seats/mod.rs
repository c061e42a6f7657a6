//! Workshop seats: the claim page and form, a participant's seat (page, new command, move), and the admin's seat repairs.

pub mod home;
pub mod move_seat;
pub mod reissue_seat;
pub mod request_vm;
pub mod seat_command;
pub mod seat_move;
pub mod seat_page;
pub mod unassigned_vms_count;
