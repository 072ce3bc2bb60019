-- A pass that lasts: the entry that uses a grant's pass checks its holder in until the
-- pass's time is up (the end of its schedule span, or some minutes), and entries until
-- then use nothing. `pass_lasts` is `entry` (or NULL), `span` or `minutes:N`.
ALTER TABLE grants ADD COLUMN pass_lasts TEXT;
ALTER TABLE grants ADD COLUMN checked_in_until BIGINT;
-- What an allowed entry did with a pass: `used` one, or came in `checked_in` by one used
-- earlier; NULL when no pass was involved. Check-ins upstream follow the `used` ones.
ALTER TABLE events ADD COLUMN pass_use TEXT;
