-- A fleet database made by WardSight's schema of 2026-12-07 (before numbered migrations): the demo's
-- server after a model rollout, a diagnostics job, a webhook endpoint and a delivery. tests/fleet/test_migrations.py upgrades it.
BEGIN TRANSACTION;
CREATE TABLE alert_feed (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('alert', 'acknowledged', 'resolved')),
        at REAL NOT NULL,
        actor TEXT,
        note TEXT
    );
INSERT INTO "alert_feed" VALUES(1,'78996e24-ecdf-428d-b0e3-ca26088b1b49','alert',1.79663902506491637229e+09,NULL,NULL);
CREATE TABLE alert_states (
        event_id TEXT PRIMARY KEY REFERENCES events (event_id) ON DELETE CASCADE,
        acknowledged_by TEXT,
        acknowledged_at REAL,
        resolved_by TEXT,
        resolved_at REAL,
        note TEXT
    );
CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        revoked_by TEXT,
        last_used_at REAL
    );
INSERT INTO "api_tokens" VALUES('08c5687e7ceed88a','demo-ota','aac81b63e58ab9c5a475bb25e02fb224aed7d57974e32c06224a8b9a71efd70d','admin','system',1.79663893116239476201e+09,NULL,NULL,NULL,1.79663896055068945879e+09);
CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
INSERT INTO "audit" VALUES(1,1.79663893106246280676e+09,'system','operator.create','user:demo','{"role":"viewer"}','0000000000000000000000000000000000000000000000000000000000000000','6ece9bfe563484a496d1f1c7b20d7c937eceeb17298e06af016108a1dc91558a');
INSERT INTO "audit" VALUES(2,1.79663893116239476201e+09,'system','apitoken.create','apitoken:08c5687e7ceed88a','{"expires_at":null,"name":"demo-ota","role":"admin"}','6ece9bfe563484a496d1f1c7b20d7c937eceeb17298e06af016108a1dc91558a','5abcd5e0694e8608b76bed90e4a45688078655153af1332fe1988914a0d8c57f');
INSERT INTO "audit" VALUES(3,1.79663893118963336947e+09,'apitoken:08c5687e7ceed88a','ota.init','ota:root:v1','{"initialized":true,"root_version":1,"snapshot_version":1,"targets_version":1,"timestamp_version":1}','5abcd5e0694e8608b76bed90e4a45688078655153af1332fe1988914a0d8c57f','b2930612257d58bc0f68f5ae3dca57a03f6335cffaf0ba81772f436f421969a5');
INSERT INTO "audit" VALUES(4,1.79663893119314908982e+09,'cli:root','token.create','token:7a550809cb3e','{"require_approval":false,"room":"demo-room-101","site":null,"ward":null}','b2930612257d58bc0f68f5ae3dca57a03f6335cffaf0ba81772f436f421969a5','c96d18ceadc9128653255766f1715be63351eac976150158de80d433175c5e59');
INSERT INTO "audit" VALUES(5,1.79663893121116089823e+09,'token:7a550809cb3e','device.enroll','dev-4655442590c2620f','{"name":"demo-camera","room":"demo-room-101","site":null,"status":"active","ward":null}','c96d18ceadc9128653255766f1715be63351eac976150158de80d433175c5e59','1ddd368f1b011a506da3b12c36aaf29596715e8dc4c9b60f6f33aaf047f55ed3');
INSERT INTO "audit" VALUES(6,1.79663895913623642914e+09,'apitoken:08c5687e7ceed88a','model.upload','model:movenet-multipose/1.1','{"length":9594880,"replaced":false,"sha256":"615d82f0c4d6006bfcc286cf91359dd65074748e1907c73c090d9ce4bf15723f","target":"models/movenet-multipose/1.1.wsm"}','1ddd368f1b011a506da3b12c36aaf29596715e8dc4c9b60f6f33aaf047f55ed3','10fc5c23632388f5fe20accbe228369986a7242fb370059b62de129d59356047');
INSERT INTO "audit" VALUES(7,1.79663895915899467464e+09,'apitoken:08c5687e7ceed88a','ota.targets','ota:targets:v2','{"added":["models/movenet-multipose/1.1.wsm"],"removed":[],"snapshot_version":2,"targets_version":2,"timestamp_version":2}','10fc5c23632388f5fe20accbe228369986a7242fb370059b62de129d59356047','12a65f4453763e5f75517edf17de248f1c9823510f924c5ea944becf2f892605');
INSERT INTO "audit" VALUES(8,1.79663896018106460572e+09,'apitoken:08c5687e7ceed88a','rollout.create','rollout:ro-713f0a09410b','{"devices":1,"groups":[1],"model":"movenet-multipose","target_checked":true,"version":"1.1"}','12a65f4453763e5f75517edf17de248f1c9823510f924c5ea944becf2f892605','fe8e3222a72e1047f4fd683ca8cbd2cb1407eb61bd34124e96c63162ef4b14cd');
INSERT INTO "audit" VALUES(9,1.79663896051122450826e+09,'apitoken:08c5687e7ceed88a','job.create','batch-069e584a8dad2778','{"count":1,"devices":["dev-4655442590c2620f"],"error_threshold":null,"expires_at":1796639560.5112245,"kind":"collect_diagnostics","params":{},"rate_per_minute":null,"target":{"room":"demo-room-101"}}','fe8e3222a72e1047f4fd683ca8cbd2cb1407eb61bd34124e96c63162ef4b14cd','8cab1dd1ceafc3c52e22c5da98b83a95cfd06c794ae88d8201f11909055feaed');
INSERT INTO "audit" VALUES(10,1.7966389605624365806e+09,'device:dev-4655442590c2620f','job.succeeded','dev-4655442590c2620f','{"batch_id":"batch-069e584a8dad2778","job_id":"job-5070a2ef4aabf2346187dacd9988174b","kind":"collect_diagnostics","reason":null,"requested_by":"apitoken:08c5687e7ceed88a"}','8cab1dd1ceafc3c52e22c5da98b83a95cfd06c794ae88d8201f11909055feaed','8cf8bb5234808c7bc42fa8d5601c0019229ba2116b39202817cb8f7957d7a95d');
INSERT INTO "audit" VALUES(11,1.79663896607058620451e+09,'system','rollout.complete','rollout:ro-713f0a09410b','{"reason":null}','8cf8bb5234808c7bc42fa8d5601c0019229ba2116b39202817cb8f7957d7a95d','f6dd41e2c38017d01be675dc75201e58c07d36bb537c56dc690041bc596e92fe');
CREATE TABLE "devices" (
   "id" TEXT PRIMARY KEY,
   "name" TEXT NOT NULL,
   "room" TEXT NOT NULL,
   "public_key" TEXT NOT NULL,
   "enrolled_at" REAL NOT NULL,
   "last_seen" REAL,
   "token_id" TEXT
, "site" TEXT, "ward" TEXT, "status" TEXT, "status_reason" TEXT, "status_changed_at" REAL, "status_changed_by" TEXT, "credential_id" TEXT, "credential_expires_at" REAL, "tags" TEXT);
INSERT INTO "devices" VALUES('dev-4655442590c2620f','demo-camera','demo-room-101','L-isxoUubrCHa6OA4e9ltksdBSVAbUn03yPw8O8aoaM',1.79663893121116089823e+09,1.79663902506491637229e+09,'7a550809cb3e',NULL,NULL,'active',NULL,1.79663893121116089823e+09,'token:7a550809cb3e','139412946cb29098e07b8772',1796725331.0,'[]');
CREATE TABLE "events" (
   "event_id" TEXT PRIMARY KEY,
   "device_id" TEXT NOT NULL REFERENCES "devices"("id"),
   "room" TEXT NOT NULL,
   "app" TEXT NOT NULL,
   "type" TEXT NOT NULL,
   "severity" TEXT NOT NULL,
   "time" REAL NOT NULL,
   "received_at" REAL NOT NULL,
   "track_id" INTEGER,
   "confidence" REAL,
   "data" TEXT
);
INSERT INTO "events" VALUES('714ac30d-3647-43de-8e2b-478def2c7c79','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663893635848355293e+09,1796638936.38348,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('84d4efc8-3a0b-4081-b1fc-cde8bc2ef37d','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663893771848368649e+09,1.79663893773342466355e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('91f27f1b-43c8-4a63-bf62-261878570d6d','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663894635848355296e+09,1.7966389463734118939e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('83ccd411-fa3c-4fa3-ac82-93e35a157e91','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.7966389477184832096e+09,1.79663894773588705064e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('dec3c461-e9e2-4da8-b933-d1146b566643','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663895635848379133e+09,1.79663895637643837924e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('3508d890-a337-4202-8462-c26af55e6514','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.7966389577184836865e+09,1.79663895774276781078e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('ba4e562f-f17e-4dab-a586-6e556ca76ef0','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.7966389664916012287e+09,1.79663896650743865968e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('5b5c7b18-20d2-4eca-8d6a-917296357040','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.7966389678516016007e+09,1796638967.86965,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('cefeb208-e2bc-47e9-8410-92449379e3bd','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663897649160122877e+09,1.79663897650577974321e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('c67e2827-f317-4f99-adb6-a220db69fb8e','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663897785160112377e+09,1.79663897787196397779e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('793c9767-baeb-4eba-a122-1d649a87fba7','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663898649160122871e+09,1.79663898651652359961e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('3fb3c129-9e5f-4a5a-90ae-0dc26334965a','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663898785160136223e+09,1.79663898787658286087e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('d3955639-782c-43f0-8224-35d4b61e4888','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663899649160122874e+09,1.79663899650630855559e+09,NULL,0.575,'{"count": 1, "held_seconds": 1.0, "previous": 0}');
INSERT INTO "events" VALUES('bb1d4c57-b3fb-4098-85aa-7b9e0e349f57','dev-4655442590c2620f','demo-room-101','occupancy','count_changed','info',1.79663899785160136217e+09,1.79663899787387180331e+09,NULL,1.0,'{"count": 0, "held_seconds": 1.0, "previous": 1}');
INSERT INTO "events" VALUES('78996e24-ecdf-428d-b0e3-ca26088b1b49','dev-4655442590c2620f','demo-room-101','fall','fall_detected','critical',1.79663902506491637229e+09,1.79663902506491637229e+09,NULL,NULL,'{}');
CREATE TABLE health_latest (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        received_at REAL NOT NULL,
        clock_skew_s REAL NOT NULL,
        sent_at REAL NOT NULL,
        uptime_s REAL NOT NULL,
        agent_version TEXT NOT NULL,
        accelerator TEXT NOT NULL,
        accelerator_configured TEXT,
        cpu_temp_c REAL,
        accelerator_temp_c REAL,
        mem_used_mb REAL,
        mem_total_mb REAL,
        fps REAL,
        frames_processed INTEGER NOT NULL,
        frames_dropped INTEGER NOT NULL,
        frames_dropped_delta INTEGER NOT NULL,
        outbox_pending INTEGER NOT NULL,
        stage_ms TEXT NOT NULL,
        models TEXT NOT NULL,
        warnings TEXT NOT NULL,
        updates TEXT
    );
INSERT INTO "health_latest" VALUES('dev-4655442590c2620f',1.79663899143848705295e+09,-6.954193115234375e-03,1.79663899143153285974e+09,3.00587977579998550932e+01,'0.1.0','cpu',NULL,NULL,NULL,839.90625,24105.24609375,25.02,752,0,0,0,'{"capture": 27.044, "inference": 12.675, "inference_decode": 0.118, "inference_invoke": 12.355, "inference_preprocess": 0.183, "scene_apps": 0.101, "tracking": 0.131}','{"movenet_multipose": "1.1"}','[]','ready');
CREATE TABLE health_samples (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        received_at REAL NOT NULL,
        fps REAL,
        cpu_temp_c REAL,
        mem_used_mb REAL,
        frames_processed INTEGER NOT NULL,
        frames_dropped INTEGER NOT NULL,
        pose_ms REAL
    );
INSERT INTO "health_samples" VALUES(1,'dev-4655442590c2620f',1.79663893131024312967e+09,0.0,NULL,1005.41015625,0,0,NULL);
INSERT INTO "health_samples" VALUES(2,'dev-4655442590c2620f',1.79663896142785477639e+09,0.0,NULL,820.3671875,0,0,NULL);
INSERT INTO "health_samples" VALUES(3,'dev-4655442590c2620f',1.79663899143848705295e+09,25.02,NULL,839.90625,752,0,12.675);
CREATE TABLE job_batches (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL,
        config TEXT,
        target TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        rate_per_minute INTEGER,
        error_threshold TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'stopped', 'cancelled')),
        ended_at REAL,
        ended_by TEXT,
        end_reason TEXT
    );
INSERT INTO "job_batches" VALUES('batch-069e584a8dad2778','collect_diagnostics','{}',NULL,'{"room": "demo-room-101"}','apitoken:08c5687e7ceed88a',1.79663896051122450826e+09,1.7966395605112245083e+09,NULL,NULL,'running',NULL,NULL,NULL);
CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES job_batches (id),
        device_id TEXT NOT NULL REFERENCES devices (id),
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        released_at REAL,
        received_at REAL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        reason TEXT,
        progress REAL,
        output TEXT,
        UNIQUE (batch_id, seq)
    );
INSERT INTO "jobs" VALUES('job-5070a2ef4aabf2346187dacd9988174b','batch-069e584a8dad2778','dev-4655442590c2620f',0,'succeeded',1.79663896051122450826e+09,1.7966389605425395965e+09,1.7966389605624365806e+09,1.7966389605624365806e+09,NULL,NULL,'== device ==
device_id = dev-4655442590c2620f
name = demo-camera
room = demo-room-101
site = None
ward = None
server_url = https://127.0.0.1:43747
device_time = 1796638960.544
server_time = 1796638960.543
clock_offset_s = -0.0004985332489013672
== versions ==
wardsight = 0.1.0
python = 3.11.7
platform = Linux-6.18.44-fc-v1300-x86_64-with-glibc2.36
numpy = 2.4.6
opencv-python-headless = 4.14.0.94
ai-edge-litert = 2.3.0
pydantic = 2.14.4
cryptography = 51.0.1
aiohttp = 3.14.5
model = movenet-multipose lightning-fp16-1
== health ==
accelerator = "cpu"
agent_version = "0.1.0"
device_id = "dev-4655442590c2620f"
fps = 25.01
frames_dropped = 0
frames_processed = 733
mem_total_mb = 24105.24609375
mem_used_mb = 722.0078125
models.movenet_multipose = "lightning-fp16-1"
outbox_pending = 0
sent_at = 1796638960.5530217
stage_ms.capture = 29.609
stage_ms.inference = 10.134
stage_ms.inference_decode = 0.114
stage_ms.inference_invoke = 9.816
stage_ms.inference_preprocess = 0.186
stage_ms.scene_apps = 0.094
stage_ms.tracking = 0.129
updates = "ready"
uptime_s = 29.31111008299922
v = 1
warnings = []
== system ==
cpu_temp_c = None
mem_used_mb = 722.0078125
mem_total_mb = 24105.24609375
uptime_s = 11972.12
load_avg = 1.87 0.81 0.31
disk_free_mb = 82205 of 270553
== config ==
accelerator.coral_model = null
accelerator.hailo_hef = null
accelerator.imx500_network = null
accelerator.kind = "auto"
bed_exit.bed_zone = null
bed_exit.enabled = false
bed_exit.memory_seconds = 600.0
fall.attended_seconds = 5.0
fall.confirm_seconds = 1.0
fall.enabled = true
fall.get_up_seconds = 2.0
fall.min_drop = 0.3
fall.still_down_seconds = 60.0
fall.window_seconds = 2.5
hand_hygiene.dispenser_dwell_seconds = 1.0
hand_hygiene.dispenser_zones = null
hand_hygiene.door_zones = null
hand_hygiene.enabled = false
hand_hygiene.lost_seconds = 3.0
hand_hygiene.patient_zones = null
hand_hygiene.rub_seconds = 20.0
hand_hygiene.use_hands = true
heartbeat_seconds = 30.0
mask.cooldown_seconds = 300.0
mask.enabled = false
mask.face_every_frames = 5
mask.grace_seconds = 30.0
mask.masks_required = false
mask.window_seconds = 300.0
min_person_score = 0.15
model = "movenet-multipose"
model_mirrors = []
name = "demo-camera"
occupancy.after_hours_max_people = 2
occupancy.cooldown_seconds = 600.0
occupancy.max_people = null
occupancy.min_score = 0.15
occupancy.patient_alone_seconds = 1800.0
occupancy.patient_zone = null
occupancy.stable_seconds = 1.0
occupancy.utc_offset_hours = 0.0
occupancy.visiting_hours = null
occupancy.zones = []
privacy_regions = []
server_url = "http://127.0.0.1:8765"
source.camera_index = 0
source.fps = 15.0
source.kind = "file"
source.loop = true
source.path = "/tmp/olddemo/models/demo-footage/bikes.mp4"
source.realtime = true
source.size = [1280, 720]
source.stall_seconds = 5.0
source.url = null
threads = 2
zones = []
== jobs ==
job-5070a2ef4aabf2346187dacd9988174b collect_diagnostics running
== recent errors ==
2026-12-07T10:22:40Z WARNING wardsight.fleet: POST /api/v1/jobs from 127.0.0.1 rejected (400): params for set_log_level: level: Input should be ''debug'', ''info'', ''warning'' or ''error''
== logs ==
2026-12-07T10:22:40Z WARNING wardsight.fleet: POST /api/v1/jobs from 127.0.0.1 rejected (400): params for set_log_level: level: Input should be ''debug'', ''info'', ''warning'' or ''error''
');
CREATE TABLE login_failures (
        username TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_attempt_at REAL NOT NULL,
        locked_until REAL
    );
CREATE TABLE operators (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        updated_at REAL NOT NULL,
        password_changed_at REAL NOT NULL,
        last_login_at REAL
    );
INSERT INTO "operators" VALUES('demo','$argon2id$v=19$m=65536,t=3,p=4$eV7MKsUuhGmzLe/l2qqLXg$plkGnaxKDG19Zg4TL1+9HFoxwOfFyf7zwVmfcNMI674','viewer',0,1.79663893106246280676e+09,'system',1.79663893106246280676e+09,1.79663893106246280676e+09,NULL);
CREATE TABLE ota_models (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        target TEXT NOT NULL UNIQUE,
        length INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        task TEXT NOT NULL,
        license TEXT NOT NULL,
        manifest TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        published_at REAL,
        published_by TEXT,
        PRIMARY KEY (name, version)
    );
INSERT INTO "ota_models" VALUES('movenet-multipose','1.1','models/movenet-multipose/1.1.wsm',9594880,'615d82f0c4d6006bfcc286cf91359dd65074748e1907c73c090d9ce4bf15723f','pose','Apache-2.0','{"format":1,"name":"movenet-multipose","version":"1.1","task":"pose","license":"Apache-2.0","min_agent_version":"0.1","builds":[{"backend":"cpu","runtime":"litert","file":"movenet_multipose_lightning_fp16.tflite","sha256":"d4489f89e6bd6777a8b9a1a16189832131f84ff90d82fae729e670b84d7948dd","size":9585276,"input":{"long_side":256,"multiple":32,"dtype":"uint8"},"decoder":"movenet_multipose","hardware":null}]}','apitoken:08c5687e7ceed88a',1.79663895913623642914e+09,1.79663895915845775604e+09,'apitoken:08c5687e7ceed88a');
CREATE TABLE presence (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        last_heard_at REAL,
        offline_since REAL,
        returned_at REAL
    );
INSERT INTO "presence" VALUES('dev-4655442590c2620f',1.79663899787218141559e+09,NULL,NULL);
CREATE TABLE "proof_jti" (
   "device_id" TEXT,
   "jti" TEXT,
   "expires_at" REAL NOT NULL,
   PRIMARY KEY ("device_id", "jti")
);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','CJGl0jL24J6Vke3tEzTsWU1h',1.79663923625536322593e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','qLu313JRZEGQBL1s4puM46gR',1.79663923629528450966e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','pnkkB5tHhKTCLSr7ZC8dYLd4',1.79663923630848765375e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ZnEE3TJraKtm8Q6T2MZ-ezTN',1.79663923631517934795e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','zvcMPX41iEL0E09__y2oFNVd',1.79663924138174343103e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','oDZsNlyobl2AslkCPiWmgYVQ',1.79663924273178601267e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','wNoSq3_nozff2Tq2ZEsbDlCJ',1.79663925137186384194e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','i6S7dtNvJGjIb72yzBKcd-40',1.79663925273430657384e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ZtSCxyytFlo9pmIOoxEKeqQx',1.79663926132780981063e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','0R_WPQ1OyuytG4FyKzWqoOWJ',1.79663926137484502793e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','4euY5gPI1rbL4dF1CtvzpHrn',1.79663926273800253867e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','Q62tg0PS6sKjXNYiv7KdVZN4',1.79663926518738365171e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','diaaTJ52fg7NrE83gy2m3kV6',1.79663926519312739369e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','F8Tpm2XMYeeFZRamKLZvMfEx',1.79663926522262382503e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','u0MOKg003XywzVh658kDnZhd',1.79663926535748696327e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','M1IfxODS9os-tsTs254oD3n7',1.79663926553493285176e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','BMZP1lp5yGL6_-xDFSh9PNhm',1.7966392655586717129e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','qxpXHLrvra8GXpDrHHZ7HD_I',1.7966392658459191322e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','a2ri54nB-Bu7St1DcDtiWjnq',1.7966392664115414619e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ANf98p-6Nm3ILeB9PXgyY-9g',1.7966392664229137898e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','HhKeeTMTE59lhIDbPUugU_ut',1.7966392664354693889e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','8SxLcMdRLbX3uAwg-AGgB7Wc',1.79663926643822669977e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','t3HxPZGQo2B0sLsE9BKS0YIR',1.79663926738312983511e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ZWEvKna0mE1BvVbrx_BiWknp',1.79663926795262694356e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','jlBI-4RTccj1kvD_koO1luTm',1.79663927150572586052e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','fInq6cSLvOc1PWHlAxumUH6M',1.79663927286776924129e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','wY4usxoNZyji2a9WD7XyilkS',1.79663928150418710709e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ul0ZRLJcSxfVEwlqU9Uj9bYh',1796639282.87048);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','HGaLDXWprZo6ILaOuZsb2Tgf',1.79663929151472735409e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','ugf-JC9c_6FJWS0GaIMsgRC4',1.79663929239012479786e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','9zNJ3w5wC5mK9KFDMtyf0Xh5',1.79663929287516641614e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','UjwRzT9XQTqoQoLb7fZvU-7N',1.79663929643592238426e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','MUM2PnXqdgnSCpcbcSJJqwl2',1.7966393015048413277e+09);
INSERT INTO "proof_jti" VALUES('dev-4655442590c2620f','t3gT3OVsasfJHOLnkPDNi2H7',1.79663930287218141551e+09);
CREATE TABLE rollout_devices (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        PRIMARY KEY (device_id, rollout_id)
    );
INSERT INTO "rollout_devices" VALUES('ro-713f0a09410b','dev-4655442590c2620f');
CREATE TABLE rollout_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        device_id TEXT NOT NULL,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        progress REAL,
        received_at REAL NOT NULL,
        done INTEGER,
        total INTEGER
    );
INSERT INTO "rollout_reports" VALUES(1,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','downloading',NULL,NULL,1.79663896022406673427e+09,NULL,NULL);
INSERT INTO "rollout_reports" VALUES(2,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','downloaded',NULL,NULL,1.7966389603596251011e+09,NULL,NULL);
INSERT INTO "rollout_reports" VALUES(3,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','installed',NULL,NULL,1.7966389608472845555e+09,NULL,NULL);
INSERT INTO "rollout_reports" VALUES(4,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','activated',NULL,NULL,1.79663896141585040094e+09,NULL,NULL);
INSERT INTO "rollout_reports" VALUES(5,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','activated',NULL,0.033,1.79663896143931198115e+09,1,30);
INSERT INTO "rollout_reports" VALUES(6,'ro-713f0a09410b','dev-4655442590c2620f','movenet-multipose','1.1','healthy',NULL,NULL,1.79663896295453524593e+09,NULL,NULL);
CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        settled INTEGER NOT NULL DEFAULT 0,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        target_checked INTEGER NOT NULL,
        last_report_id INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
INSERT INTO "rollouts" VALUES('ro-713f0a09410b','movenet-multipose','1.1','completed',1,'{"error_threshold": {"count": 0, "fraction": null}, "from_versions": {}, "groups": [["dev-4655442590c2620f"]], "in_progress_timeout_s": 3600.0, "model": "movenet-multipose", "previous_version": null, "rollout_id": "ro-713f0a09410b", "success_threshold": 1.0, "version": "1.1", "window": null}','{"accepted_group": null, "devices": {"dev-4655442590c2620f": {"done": null, "last_report_at": 1796638962.9545352, "progress": null, "reached": "healthy", "reason": null, "reverting": false, "since": 1796638962.9545352, "status": "healthy", "total": null}}, "groups_started": 1, "reason": null, "since": 1796638966.0705862, "status": "completed"}','{"model":"movenet-multipose","version":"1.1","selector":{"site":null,"ward":null,"room":"demo-room-101","tags":[],"percent":null},"groups":[{"count":null,"percent":100.0}],"success_threshold":1.0,"error_threshold":{"count":0,"fraction":null},"in_progress_timeout_s":3600,"window":null,"previous_version":null}',1,6,'apitoken:08c5687e7ceed88a',1.79663896018106460572e+09,1.79663896607058620451e+09);
CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL
    );
CREATE TABLE "tokens" (
   "id" TEXT PRIMARY KEY,
   "secret_hash" TEXT NOT NULL,
   "room" TEXT NOT NULL,
   "created_at" REAL NOT NULL,
   "expires_at" REAL NOT NULL,
   "used_at" REAL,
   "device_id" TEXT
, "site" TEXT, "ward" TEXT, "require_approval" INTEGER, "revoked_at" REAL, "created_by" TEXT);
INSERT INTO "tokens" VALUES('7a550809cb3e','5dad23c15041be91f403379fce5489f352012600e5eb29593deea9c001d5bd27','demo-room-101',1.79663893119314908982e+09,1.79663923119314908978e+09,1.79663893121116089823e+09,'dev-4655442590c2620f',NULL,NULL,0,NULL,'cli:root');
CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
        msg_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
        last_status INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (endpoint_id, event_id)
    );
INSERT INTO "webhook_deliveries" VALUES(1,1,'78996e24-ecdf-428d-b0e3-ca26088b1b49','msg_78996e24ecdf428db0e3ca26088b1b49','{"type":"wardsight.fall.fall_detected","timestamp":"2026-12-07T10:23:45.064Z","data":{"event_id":"78996e24-ecdf-428d-b0e3-ca26088b1b49","device_id":"dev-4655442590c2620f","room":"demo-room-101","app":"fall","type":"fall_detected","severity":"critical","time":1796639025.0649164,"track_id":null,"confidence":null,"data":{}}}',0,1.79663902506491637229e+09,'pending',NULL,NULL,1.79663902506491637229e+09,NULL);
CREATE TABLE webhook_endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('standard', 'fhir')),
        hmac_secret TEXT,
        apps TEXT NOT NULL DEFAULT '[]',
        min_severity TEXT NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info', 'warning', 'critical')),
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        last_attempt_at REAL,
        last_success_at REAL,
        last_status INTEGER,
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        delivered_count INTEGER NOT NULL DEFAULT 0,
        dead_count INTEGER NOT NULL DEFAULT 0
    );
INSERT INTO "webhook_endpoints" VALUES(1,'nurse-call','https://nurse-call.example.org/hook','standard','whsec_yZsiXNv2c0MiTAPLad/E0EUVCdwR5KecBndJFrTerz4=','[]','info',1,NULL,1.79663902506491637229e+09,'operator:admin',NULL,NULL,NULL,NULL,0,0,0);
CREATE UNIQUE INDEX "idx_devices_public_key"
    ON "devices" ("public_key");
CREATE INDEX "idx_proof_jti_expires_at"
    ON "proof_jti" ("expires_at");
CREATE INDEX "idx_events_received_at"
    ON "events" ("received_at");
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_actor ON audit (actor);
CREATE INDEX audit_target ON audit (target);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, status, id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, endpoint_id);
CREATE INDEX health_samples_device ON health_samples (device_id, received_at);
CREATE INDEX rollouts_created ON rollouts (created_at);
CREATE INDEX rollout_reports_rollout ON rollout_reports (rollout_id, id);
CREATE TRIGGER rollout_reports_no_update BEFORE UPDATE ON rollout_reports
        BEGIN SELECT RAISE(ABORT, 'rollout reports are append-only'); END;
CREATE TRIGGER rollout_reports_no_delete BEFORE DELETE ON rollout_reports
        BEGIN SELECT RAISE(ABORT, 'rollout reports are append-only'); END;
CREATE INDEX alert_feed_event ON alert_feed (event_id);
CREATE INDEX events_alerts ON events (room, received_at) WHERE severity IN ('warning', 'critical') OR (app = 'system' AND type = 'device_offline');
CREATE TRIGGER alert_feed_on_event AFTER INSERT ON events
        WHEN NEW.severity IN ('warning', 'critical') OR (NEW.app = 'system' AND NEW.type = 'device_offline')
        BEGIN INSERT INTO alert_feed (event_id, kind, at) VALUES (NEW.event_id, 'alert', NEW.received_at); END;
CREATE INDEX events_app_time ON events (app, time);
CREATE INDEX job_batches_created ON job_batches (created_at);
CREATE INDEX jobs_device_state ON jobs (device_id, state);
CREATE INDEX jobs_state ON jobs (state);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit',11);
INSERT INTO "sqlite_sequence" VALUES('alert_feed',1);
INSERT INTO "sqlite_sequence" VALUES('rollout_reports',6);
INSERT INTO "sqlite_sequence" VALUES('webhook_endpoints',1);
INSERT INTO "sqlite_sequence" VALUES('webhook_deliveries',1);
COMMIT;
