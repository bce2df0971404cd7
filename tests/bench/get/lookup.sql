\set id random(1, :rows)
SELECT profile::text, kafka_partition::text || '.' || kafka_offset::text || '.' || encode(command_id, 'hex') FROM profiles WHERE recipient_id = :id::text;
