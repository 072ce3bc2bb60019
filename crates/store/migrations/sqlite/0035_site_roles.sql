-- An operator token may be limited to one site: its role holds only at that site's doors.
ALTER TABLE admin_tokens ADD COLUMN site TEXT;
