/* tier.pml -- Promela model of the Tandem failover protocol (DESIGN.md section 3: "Failover
 * rules", "Who decides", "Epochs fence everything", "Invariants" 1, 2 and 4).
 * Checked by model_test.go (TestSpinModel, TestSpinMutants); see MAPPING.md for the Go side.
 *
 *   spin -a tier.pml && gcc -O2 -DSAFETY -DMEMLIM=4096 -o pan pan.c && ./pan -m1000000 -w24
 *
 * PROPERTIES (assertions, exhaustive search, no bitstate/hash compaction):
 *   P1 never two members committing in one epoch     -- ackOne(): committer[e] is one member
 *   P2 no acknowledged write lost                    -- promote(): the new primary's journal holds
 *      every acknowledged write; ackOne(): a member already promoted to a higher epoch holds it
 *   REACH_* witnesses (TestSpinReachable) show the checked states include acks in the last epoch,
 *      alone commits in agent mode and after a re-seed, quarantined tails, takeovers after all acks,
 *      a restarted primary taking records from its backup, a restarted primary's reopen granted.
 *   I4 journals are prefixes of one history          -- recvJ(): a backup taking a record holds a
 *      prefix of the primary's journal; fetchTail(): the backup's journal and the fenced primary's
 *      durable journal agree where both have records; the resync step: the same for a restarted
 *      primary and its backup
 *
 * SCOPE: 2 failover members, arbiter, the agents (as an RPC), a client issuing W writes; lossy
 * bounded links; member crashes losing the unsynced journal tail, restart (a former primary that
 * was not fenced resumes as primary, otherwise waits and rejoins through fork-point truncation);
 * records shipped before the primary's own fsync while the backup is active (ShipsEarly), with the
 * rule that makes it safe: a primary restarted with its backup active takes no writes until it has
 * taken the backup's records of its epoch (resync), or, the backup silent, opens a new epoch of its
 * own (REOPEN at the arbiter, a CAS racing a takeover, the ask persisted and reported by the agent
 * as FenceEpoch; in agent mode on its own authority); acknowledgements echo the primary's restart
 * count (Restarts) so one from before a restart never counts;
 * agent kill/fence; arbiter disk loss + re-seed from the members' records (the lost arbiter's
 * answers in flight are discarded: members raised their session); arbiter restart (only matters
 * with MUTANT_ARBITER_FORGETS, the correct arbiter fsyncs before answering). Both takeover paths
 * (arbiter grant; agent fence + journal tail), "backup no longer active" / "active again" (CAS at
 * the arbiter, refused after a grant), the takeover promise (a backup that asked acks nothing
 * more of its epoch), and agent-controlled mode (entering by the backup's durable promise, going
 * alone after losing the backup, leaving by the arbiter's "arbiter-controlled, backup active").
 * Timeouts are nondeterministic: any member may suspect any peer at any time, and the arbiter's
 * "has it also lost the primary?" check is not modelled (it may grant whenever the record allows).
 * Default bounds: W=2 writes, epochs <= MAXEP=3, MAXF=2 faults per run, MAXRQ=3 arbiter requests
 * per member (retries unbounded).
 *
 * ABSTRACTIONS: an arbiter request is handled in the sender's step or lost (cap-1 FIFO request
 * links add no orderings the retries do not cover); answers travel back on lossy cap-1 channels.
 * Journal shipping: the backup takes the next shipped record of the primary (SHIPPED) in one
 * step or not at all (loss = no step); acks are asynchronous and lossy. The resync exchange is one
 * step (the backup's records it answers with are durable; the primary ships nothing new meanwhile)
 * and the taken records count as durable at once. A restarted primary's resend of a reopen ask
 * is a fresh request (new id) rather than the same request again. The agent query/answer is one RPC
 * step (the fenced member cannot change its disk in between). Acknowledgements happen in the step
 * that enables them (a later ack adds nothing the checks do not already cover). The record's seq
 * is replaced by epoch checks plus a request id the answer must echo (pendingReq.seen in Go).
 *
 * The agent may also kill a primary that crashed and restarted once (a second fault); a member
 * restarts at most once.
 *
 * LEFT OUT: async (DR/reporting) members, planned handover, forced promotion / DataLoss, the
 * "no failover" flag, the policy gate (Alignment), message duplication, journal purge, more than
 * MAXF faults, epoch > MAXEP. The client never retries a write (idempotency keys are not modelled).
 *
 * MAPPING (model -> Go, package mirror/failover):
 *   proctype Member(id)    member.go: Member (one per failover member; id -> MemberConfig.ID/Peer)
 *   inline handle(m)       arbiter.go: Arbiter.Step(MsgArbiterReq)
 *   proctype Arbiter       arbiter faults: disk loss (ArbiterState.Seeded=false), re-seed
 *                          (Reseed answer, OpReport, HardState.ArbiterSession), restart (NewArbiter)
 *   inline agentAsk(m,b)   agent.go: Agent.Step(MsgAgentQuery) -> ActFence -> MsgFenceDone ->
 *                          MsgAgentResp{Down,Fenced,Entries,FullLog}; member.go: Member.onAgentResp
 *   role[m]                PRIMARY = Member.actingPrimary(); BACKUP = HardState.Role==RoleBackup;
 *                          WAITING = StatusWaiting (restarted, before adoptEpoch); DOWN = process
 *                          not running (MsgMemberStatus Up=false)
 *   ep[m]                  HardState.Epoch
 *   asked[m]==ep[m]+1      HardState.Asked (TakeoverAsk{Valid, Epoch, At, LSN}); the frozen journal
 *                          = TakeoverAsk.LSN = Record.ForkLSN (truncate(a.LSN) on the grant)
 *   wasprim[m]             HardState.Role==RolePrimary (what a member reports when re-seeding)
 *   resync[m]              Member.resyncing (restarted primary, HardState.BackupActive: ShipsEarly off,
 *                          TakesWrites false); the resync step = MsgAppend{Resync} answered by
 *                          MsgAppendResp{Resync, Entries} -> takeResync
 *   reo[m]                 HardState.Asked{Valid, Reopen} (persisted before OpReopen leaves);
 *                          FENCEEP(m) = FenceEpoch(hs), the epoch the agent reports
 *   rs[m], ACK's 4th field HardState.Restarts, MsgAppend.Restarts echoed in MsgAppendResp.Restarts
 *   SHIPPED(m)             what the primary has sent: its whole journal while the backup is active
 *                          (ShipsEarly), else what it has made durable
 *   j/jlen[m]              Member.log ([]Entry, LSN = index+1), lastLSN(); write id = Entry.Data
 *   dlen[m]                entries persisted from Ready.Entries (the shell's fsync)
 *   cl[m]                  Member.commit, Action ActAckClients{UpTo}
 *   bAck[m]                Member.match
 *   alone[m]               Member.canCommitAlone(): aloneConsent && !HardState.BackupActive
 *                          (model keeps the consent durable; Go re-asks after a restart: stricter)
 *   pend[m], rq[m]         Member.pending (*pendingReq{op, seen}); an answer counts only if it
 *                          echoes the current request (msg.Op==pending.op && msg.Seen==pending.seen)
 *   mode[m], propose[m]    HardState.Mode (ModeArbiter/ModeAgent), Member.agentModeSeq != 0
 *   fenced[m]              HardState.Fenced (fence mark on the data dir)
 *   aEp, aPrim, aActive    ArbiterState.Record: Version.Epoch, Primary (Backup = the other),
 *                          BackupActive; Record.Mode is ModeArbiter whenever the arbiter decides
 *   aLost                  !ArbiterState.Seeded
 *   messages               pull step = MsgAppend{Epoch, PrevLSN, Entries, Mode, ModeSeq} (rejoin =
 *                          adoptEpoch + Truncate{Quarantine}); link[m] ACK = MsgAppendResp{Epoch,
 *                          Match, Restarts}; TAKEOVER/INACT/ACT/ARBMODE/REOPEN = MsgArbiterReq Op
 *                          OpTakeover/OpBackupInactive/OpBackupActive/OpArbiterMode/OpReopen; arbOut GRANT/OK/NO =
 *                          MsgArbiterResp{OK, Record} (GRANT: Record.Primary == asker at epoch+1)
 *   MUTANT_*               Mutations{AckBeforeBackup: ACK_EARLY, NonActiveTakeover: NO_TAIL,
 *                          ArbiterForget: ARBITER_FORGETS, AckAfterTakeoverAsk: BACKUP_ACKS_OLD,
 *                          NoResync: NO_RESYNC, NoRestartsEcho: NO_RESTARTS_ECHO}; INACTIVE_TAKEOVER,
 *                          RESEED_KEEPS_ANSWERS, ALONE_WHILE_LEAVING have no Go switch (see MAPPING.md)
 */

/* ---------------- bounds (override with spin -DNAME=value) ---------------- */
#ifndef W
#define W 2            /* client writes (distinct write ids 1..W) */
#endif
#ifndef MAXEP
#define MAXEP 3        /* highest epoch ever granted */
#endif
#ifndef MAXF
#define MAXF 2         /* faults in one run: member crash, agent kill, arbiter disk loss/restart */
#endif
#ifndef MAXRQ
#define MAXRQ 3        /* arbiter requests a member may start (retries are free) */
#endif

/* member roles */
#define DOWN    0      /* process dead (crashed or killed by its agent) */
#define PRIMARY 1
#define BACKUP  2
#define WAITING 3      /* restarted; waits for a primary's journal stream to rejoin */

/* member <-> member messages */
#define JRNL 1         /* journal record {epoch, lsn, write id} */
#define ACK  2         /* durable receipt {epoch, lsn} */
/* member -> arbiter requests, arbiter -> member replies */
#define TAKEOVER 1
#define INACT    2     /* "backup no longer active at epoch e" */
#define ACT      3     /* "backup active again at epoch e" */
#define GRANT    4
#define OK       5
#define NO       6
#define ARBMODE  7     /* "arbiter-controlled at epoch e, backup active" (leaving agent mode) */
#define REOPEN   8     /* restarted primary, backup silent: "a new epoch of my own after e" */
#define ARB   0        /* modes */
#define AGENT 1

/* ---------------- member state (index = member id 0/1) ---------------- */
byte role[2];
byte ep[2];            /* durable: current epoch */
byte asked[2];         /* durable: asked[m]==ep[m]+1 <=> m asked for takeover of ep[m] (promise: no acks for ep[m]) */
bit  wasprim[2];       /* durable: m was primary at ep[m] */
byte j[2*W];           /* journal: j[(m)*W+i] = write id at LSN i+1 */
byte jlen[2];          /* journal length (appended) */
byte dlen[2];          /* durable (fsynced) length; a crash truncates jlen to dlen */
byte cl[2];            /* primary: commit index (acknowledged to clients up to here) */
byte bAck[2];          /* primary: highest LSN the backup acked in this epoch */
bit  alone[2];         /* durable: arbiter consented "backup not active at ep[m]" -> primary may commit alone */
byte pend[2];          /* primary: kind of the outstanding arbiter request (0, INACT, ACT, ARBMODE) */
byte rq[2];            /* request id of the outstanding request; replies must echo it */
bit  crashed[2];       /* member died once (crash or agent kill) */
byte faults;           /* faults so far (<= MAXF) */
bit  restarted[2];
bit  fenced[2];        /* durable: fenced by its agent; never primary again in ep[m] */
bit  mode[2];          /* durable: ARB or AGENT (backup: promised to take over only through the agent) */
bit  propose[2];       /* primary: asks the backup for the agent-mode promise */
bit  resync[2];        /* restarted primary: no writes until it holds its backup's records of ep[m] */
bit  reo[2];           /* durable: asked the arbiter for a new epoch of its own (REOPEN) */
byte rs[2];            /* durable: restarts of m as primary in ep[m]; acknowledgements echo it */

/* ---------------- arbiter record {epoch, seq, primary, backup, backup_active, mode} ---------------- */
byte aEp;              /* record epoch; backup = 1-aPrim; seq: see pend/rq; mode: arbiter-controlled when it decides */
bit  aPrim;
bit  aActive;
bit  aLost;            /* disk lost: answers nothing until re-seeded */
bit  aDiskLossUsed;
#ifdef MUTANT_ARBITER_FORGETS
byte dEp; bit dPrim; bit dActive; bit dirty; bit aRestartUsed;
#define PERSIST dirty = 1
#else
#define PERSIST skip   /* record is fsynced before the reply (same atomic step) */
#endif

/* While its backup is active the primary ships records before its own fsync (ShipsEarly), so the
 * two fsyncs overlap; otherwise only records it has fsynced. A primary that crashes in between
 * comes back without records its backup holds: it resyncs (takes them) before writing again, or,
 * with the backup silent, opens a new epoch (REOPEN at the arbiter; on its own in agent mode).
 * Going alone (alone[m] = 1) is persisted only after every earlier record is durable. */
#define SHIPPED(m) (alone[m] -> dlen[m] : jlen[m])

/* ---------------- ghost state for the properties ---------------- */
byte nextw = 1;        /* next client write id */
byte acked;            /* bitmask of acknowledged write ids */
byte committer[MAXEP+1]; /* committer[e] = 1+member that acknowledged a write in epoch e */
hidden byte t_, e_, l_, w_, i_, k_, r_, c0_, c1_, s_;

/* ---------------- lossy, bounded links ---------------- */
chan link[2]   = [1] of { byte, byte, byte, byte };  /* to primary m: ACK, epoch, lsn, restarts echoed */
chan arbOut[2] = [1] of { byte, byte, byte };        /* arbiter -> member m: kind, epoch, rq */

/* a send may be lost; a full channel drops it */
inline lsend3(ch, a, b, c)    { if :: nfull(ch) -> ch!a,b,c   :: true fi }
inline lsend4(ch, a, b, c, d) { if :: nfull(ch) -> ch!a,b,c,d :: true fi }

/* r_ = write w is in m's durable journal */
inline has(m, w) {
  r_ = 0; i_ = 0;
  do :: i_ < dlen[m] -> if :: j[(m)*W+i_] == w -> r_ = 1 :: else fi; i_++
     :: else -> break
  od; i_ = 0
}

/* The primary acknowledges the write at LSN cl[m]+1 to its client. */
inline ackOne(m) {
  w_ = j[(m)*W + cl[m]];
  /* P1: never two members committing (acknowledging) in one epoch */
  assert(committer[ep[m]] == 0 || committer[ep[m]] == (m)+1);
  committer[ep[m]] = (m)+1;
  acked = acked | (1 << (w_-1));
#ifdef REACH_ACK_IN_LAST_EPOCH
  assert(ep[m] != MAXEP)                                  /* witness: a write acked after two takeovers */
#endif
#ifdef REACH_AGENT_MODE_ALONE
  assert(!(mode[m] == AGENT && bAck[m] <= cl[m]))         /* witness: acked alone in agent mode */
#endif
#ifdef REACH_ALONE_AFTER_RESEED
  assert(!(aDiskLossUsed && !aLost && bAck[m] <= cl[m]))  /* witness: acked alone after a re-seed */
#endif
  /* P2: a member already promoted to a higher epoch must hold the write */
  if :: ep[1-(m)] > ep[m] && wasprim[1-(m)] -> has(1-(m), w_); assert(r_) :: else fi;
  cl[m]++; w_ = 0; r_ = 0
}

#ifdef MUTANT_ACK_EARLY
#define CANACK(m) (cl[m] < dlen[m])
#else
#define CANACK(m) (cl[m] < dlen[m] && (alone[m] || bAck[m] > cl[m]))
#endif
/* Acknowledge every write the synchronous rule allows. Called in the step that enables it:
 * delaying an acknowledgement only adds interleavings that the P2 check at promotion covers. */
inline ackWrites(m) {
  do :: role[m] == PRIMARY && CANACK(m) -> ackOne(m)
     :: else -> break
  od
}

/* m becomes primary of epoch E. P2: its journal holds every acknowledged write. */
inline promote(m, E) {
  ep[m] = E; role[m] = PRIMARY; wasprim[m] = 1; asked[m] = 0; propose[m] = 0;
  dlen[m] = jlen[m]; cl[m] = jlen[m]; bAck[m] = 0; pend[m] = 0; resync[m] = 0; reo[m] = 0; rs[m] = 0;
#ifdef REACH_TAKEOVER_ALL_ACKED
  assert(acked != (1 << W) - 1)                           /* witness: takeover after every write was acked */
#endif
  k_ = 1;
  do :: k_ <= W -> if :: (acked & (1 << (k_-1))) -> has(m, k_); assert(r_) :: else fi; k_++
     :: else -> break
  od; k_ = 0; r_ = 0
}

/* m (waiting, or a stale member) joins the primary 1-m at epoch E: fork point = longest common
 * prefix with the primary's journal; the tail beyond it is quarantined (dropped here). */
inline rejoin(m, E) {
  k_ = 0;
  do :: k_ < jlen[m] && k_ < SHIPPED(1-(m)) && j[(m)*W+k_] == j[(1-(m))*W+k_] -> k_++
     :: else -> break
  od;
  i_ = k_; do :: i_ < W -> j[(m)*W+i_] = 0; i_++ :: else -> break od; i_ = 0;
#ifdef REACH_QUARANTINE
  assert(k_ == jlen[m])                                   /* witness: a rejoining member drops a tail */
#endif
  jlen[m] = k_; dlen[m] = k_; k_ = 0;
  if :: E > ep[m] -> asked[m] = 0 :: else fi;  /* the promise concerned an older epoch */
  ep[m] = E; role[m] = BACKUP; wasprim[m] = 0; fenced[m] = 0;
  if :: asked[m] != E+1 -> mode[m] = mode[1-(m)] | propose[1-(m)] :: else fi;  /* no promise while a takeover ask is out */
  alone[m] = 0; pend[m] = 0; bAck[m] = 0; cl[m] = 0; propose[m] = 0; resync[m] = 0; reo[m] = 0; rs[m] = 0
}

/* backup m receives journal record (l_, w_). Normally: written durably, then acked. Once m has
 * asked for a takeover of ep[m] its journal is frozen at the takeover point (the new epoch's marker
 * names it) and it acknowledges nothing more of ep[m]. */
inline recvJ(m) {
  k_ = 0;
  do :: k_ < jlen[m] -> assert(j[(m)*W+k_] == j[(1-(m))*W+k_]); k_++   /* I4: the backup's journal is a prefix of the primary's */
     :: else -> break
  od; k_ = 0;
  if
  :: asked[m] != ep[m]+1 -> j[(m)*W+jlen[m]] = w_; jlen[m]++; dlen[m] = jlen[m];
       lsend4(link[1-(m)], ACK, ep[m], jlen[m], rs[1-(m)])
#ifdef MUTANT_BACKUP_ACKS_OLD
  :: asked[m] == ep[m]+1 -> lsend4(link[1-(m)], ACK, ep[m], l_, rs[1-(m)])   /* bug: acks, but the record is past the takeover point */
#endif
  :: else -> skip
  fi
}

/* backup m takes the fenced peer's journal tail beyond its own LSN, from the peer's disk */
inline fetchTail(m) {
  k_ = 0;
  do :: k_ < jlen[m] && k_ < dlen[1-(m)] -> assert(j[(m)*W+k_] == j[(1-(m))*W+k_]); k_++   /* invariant 4 */
     :: else -> break
  od; k_ = 0;
#ifndef MUTANT_NO_TAIL
  do :: jlen[m] < dlen[1-(m)] -> j[(m)*W+jlen[m]] = j[(1-(m))*W+jlen[m]]; jlen[m]++
     :: else -> break
  od;
#endif
  dlen[m] = jlen[m]
}

inline crash(m) {
  role[m] = DOWN; crashed[m] = 1; faults++;
  i_ = dlen[m]; do :: i_ < W -> j[(m)*W+i_] = 0; i_++ :: else -> break od; i_ = 0;
  jlen[m] = dlen[m];                     /* unsynced journal lost (alone[] is durable) */
  pend[m] = 0; bAck[m] = 0; cl[m] = 0; propose[m] = 0; resync[m] = 0
}

#ifdef MUTANT_INACTIVE_TAKEOVER
#define GRANTABLE true
#else
#define GRANTABLE aActive
#endif

inline handle(m) {
  if
  :: aLost -> skip
  :: !aLost && t_ == TAKEOVER ->
     if
     :: aEp == e_ && aPrim == 1-(m) && GRANTABLE ->
          aEp = e_+1; aPrim = m; aActive = 0; PERSIST; lsend3(arbOut[m], GRANT, aEp, 0)
     :: aEp == e_+1 && aPrim == m -> lsend3(arbOut[m], GRANT, aEp, 0)   /* retry of a granted request */
     :: else -> lsend3(arbOut[m], NO, aEp, 0)
     fi
  :: !aLost && t_ == INACT ->
     if
     :: aEp == e_ && aPrim == m ->
          aEp = e_; aPrim = m; aActive = 0; PERSIST; lsend3(arbOut[m], OK, e_, l_)
     :: else -> lsend3(arbOut[m], NO, aEp, l_)
     fi
  :: !aLost && t_ == ACT ->
     if
     :: aEp == e_ && aPrim == m -> aActive = 1; PERSIST; lsend3(arbOut[m], OK, e_, l_)
     :: else -> lsend3(arbOut[m], NO, aEp, l_)
     fi
  :: !aLost && t_ == REOPEN ->
     if
     :: aEp == e_ && aPrim == m && e_ < MAXEP ->
          aEp = e_+1; aPrim = m; aActive = 0; PERSIST; lsend3(arbOut[m], GRANT, aEp, l_)
     :: aEp == e_+1 && aPrim == m -> lsend3(arbOut[m], GRANT, aEp, l_)     /* retry of a granted request */
     :: else -> lsend3(arbOut[m], NO, aEp, l_)
     fi
  :: !aLost && t_ == ARBMODE ->
     if
     :: aEp < e_ || (aEp == e_ && aPrim == m) -> aEp = e_; aPrim = m; aActive = 1; PERSIST; lsend3(arbOut[m], OK, e_, l_)
     :: else -> lsend3(arbOut[m], NO, aEp, l_)
     fi
  fi; t_ = 0; e_ = 0; l_ = 0
}

/* While "arbiter-controlled, backup active" is asked for, the primary must not go alone in agent
 * mode: the arbiter may already have recorded the backup active. */
#ifdef MUTANT_NO_RESYNC
#define RESTART_RESYNC(m) rs[m]++                 /* bug: writes on at once (Mutations.NoResync) */
#else
#define RESTART_RESYNC(m) resync[m] = 1; rs[m]++
#endif
#ifdef MUTANT_NO_RESTARTS_ECHO
#define RSOK(m) true                              /* bug: an acknowledgement from before a restart counts */
#else
#define RSOK(m) (s_ == rs[m])
#endif

#ifdef MUTANT_ALONE_WHILE_LEAVING
#define NOTLEAVING(m) true
#else
#define NOTLEAVING(m) (pend[m] != ARBMODE)
#endif

/* A request reaches the arbiter (handled in the sender's step: a cap-1 FIFO request link
 * adds no orderings the retries do not cover) or is lost; the answer travels back on arbOut. */
inline arbReq(m, kind, e, r) {
  if :: t_ = kind; e_ = e; l_ = r; handle(m) :: true -> skip fi
}

/* The epoch the agent reports for a fenced member (FenceEpoch): the next one if it asked to reopen
 * in it (the arbiter may have recorded the grant without the member learning it). */
#define FENCEEP(m) (ep[m] + reo[m])
#define NEWEP(m, b) ((ep[b] > FENCEEP(m) -> ep[b] : FENCEEP(m)) + 1)

/* Agent on member m's host, asked by the backup b whether m is down (an RPC: request or answer may
 * be lost). If m is not running as primary, or hangs (the agent kills it), the agent fences m and
 * hands over m's durable journal; b takes the tail beyond its own LSN and takes over at ep+1. */
inline agentAsk(m, b) {
  if
  :: ep[b] >= ep[m] && NEWEP(m, b) <= MAXEP && role[m] != PRIMARY ->
       e_ = NEWEP(m, b); fenced[m] = 1; reo[m] = 0; fetchTail(b); promote(b, e_); mode[b] = AGENT; alone[b] = 1; e_ = 0
  :: ep[b] >= ep[m] && NEWEP(m, b) <= MAXEP && role[m] == PRIMARY && faults < MAXF ->
       e_ = NEWEP(m, b); crash(m); fenced[m] = 1; reo[m] = 0; fetchTail(b); promote(b, e_); mode[b] = AGENT; alone[b] = 1; e_ = 0
  :: true -> skip                  /* lost, or m is up and healthy: no takeover */
  fi
}

proctype Member(bit id) {
end:
  do
  /* ---------------- primary ---------------- */
  :: atomic { role[id] == PRIMARY && !resync[id] && nextw <= W && jlen[id] < W ->   /* client write, sequenced */
       j[id*W+jlen[id]] = nextw; jlen[id]++; nextw++ }
  :: atomic { role[id] == PRIMARY && dlen[id] < jlen[id] ->           /* group commit fsync */
       dlen[id] = jlen[id]; ackWrites(id) }
  :: atomic { role[id] == PRIMARY && mode[id] == ARB && !alone[id] && !resync[id] && pend[id] != INACT && rq[id] < MAXRQ ->
       /* QoS timeout on the backup: in-trouble, ask the arbiter */
       rq[id]++; pend[id] = INACT; arbReq(id, INACT, ep[id], rq[id]) }
  :: atomic { role[id] == PRIMARY && mode[id] == ARB && alone[id] && bAck[id] == jlen[id] && rq[id] < MAXRQ ->
       /* backup caught up: from now on commits need its acks again; ask to record it active */
       alone[id] = 0; rq[id]++; pend[id] = ACT; arbReq(id, ACT, ep[id], rq[id]) }
  /* agent-controlled mode */
  :: atomic { role[id] == PRIMARY && mode[id] == ARB && !alone[id] && pend[id] == 0 && !propose[id] ->
       propose[id] = 1 }                            /* lost the arbiter, keeps the backup: ask for the promise */
  :: atomic { role[id] == PRIMARY && propose[id] && mode[1-id] == AGENT && role[1-id] == BACKUP && ep[1-id] == ep[id] ->
       mode[id] = AGENT; propose[id] = 0 }          /* the backup's ack says it promised (durably, first) */
  :: atomic { role[id] == PRIMARY && mode[id] == AGENT && !alone[id] && !resync[id] && NOTLEAVING(id) ->
       dlen[id] = jlen[id]; alone[id] = 1; ackWrites(id) }  /* backup lost 2xQoS (persisted after the records before it) */
  :: atomic { role[id] == PRIMARY && mode[id] == AGENT && alone[id] && bAck[id] == jlen[id] -> alone[id] = 0 }
  :: atomic { role[id] == PRIMARY && mode[id] == AGENT && !alone[id] && pend[id] == 0 && bAck[id] == jlen[id] && rq[id] < MAXRQ ->
       rq[id]++; pend[id] = ARBMODE; arbReq(id, ARBMODE, ep[id], rq[id]) }  /* arbiter back: leave agent mode */
  :: atomic { role[id] == PRIMARY && pend[id] != 0 ->  /* retry */
       arbReq(id, pend[id], ep[id], rq[id]) }
  /* restarted primary (resync[id]): its backup may hold records it shipped early and lost */
  :: atomic { role[id] == PRIMARY && resync[id] && role[1-id] == BACKUP && ep[1-id] == ep[id] && dlen[1-id] >= jlen[id] ->
       /* Resync answered: the backup holds our journal and sends what it holds after it; take it */
       k_ = 0;
       do :: k_ < jlen[id] -> assert(j[id*W+k_] == j[(1-id)*W+k_]); k_++   /* I4 */
          :: else -> break
       od; k_ = 0;
#ifdef REACH_RESYNC_TAKES
       assert(jlen[id] == dlen[1-id]);                 /* witness: a restarted primary takes its backup's records */
#endif
       do :: jlen[id] < dlen[1-id] -> j[id*W+jlen[id]] = j[(1-id)*W+jlen[id]]; jlen[id]++
          :: else -> break
       od;
       dlen[id] = jlen[id]; cl[id] = jlen[id]; resync[id] = 0 }   /* their clients are gone: outcome unknown */
  :: atomic { role[id] == PRIMARY && resync[id] && mode[id] == ARB && pend[id] != REOPEN && ep[id] < MAXEP && rq[id] < MAXRQ ->
       /* backup silent: ask for a new epoch of our own (persisted first, like a takeover ask) */
       reo[id] = 1; rq[id]++; pend[id] = REOPEN; arbReq(id, REOPEN, ep[id], rq[id]) }
  :: atomic { role[id] == PRIMARY && reo[id] && !resync[id] && pend[id] == 0 && rq[id] < MAXRQ ->
       /* resynced after all, the reopen answer unknown: learn it before anything else is asked */
       rq[id]++; pend[id] = REOPEN; arbReq(id, REOPEN, ep[id], rq[id]) }
  :: atomic { role[id] == PRIMARY && resync[id] && mode[id] == AGENT && ep[id] < MAXEP ->
       /* agent-controlled, backup silent 2xQoS: a new epoch on our own authority (the backup takes
        * over only through our agent, which reports this epoch from disk) */
       promote(id, ep[id]+1); mode[id] = AGENT; alone[id] = 1 }

  /* ---------------- backup: ask for takeover (either path) ---------------- */
  :: atomic { role[id] == BACKUP && ep[id] < MAXEP && mode[id] == ARB ->   /* lost the primary: arbiter */
       asked[id] = ep[id]+1; arbReq(id, TAKEOVER, ep[id], 0) }
  :: atomic { role[id] == BACKUP && ep[id] < MAXEP ->                  /* lost primary (+arbiter): agent */
       asked[id] = ep[id]+1; agentAsk(1-id, id) }
  /* ---------------- receive ---------------- */
  /* journal record JRNL{epoch, lsn, wid} from the primary 1-id: the primary streams the record after
   * the receiver's position; the model delivers it in the step it is sent, or loses it (no step) */
  :: atomic { role[1-id] == PRIMARY && role[id] != DOWN &&
              (ep[1-id] > ep[id] || (ep[1-id] == ep[id] && role[id] == WAITING)) ->
       rejoin(id, ep[1-id]) }                       /* a former primary / restarted member sees a higher epoch */
  :: atomic { role[1-id] == PRIMARY && role[id] == BACKUP && ep[1-id] == ep[id] && jlen[id] < SHIPPED(1-id) ->
       l_ = jlen[id]+1; w_ = j[(1-id)*W+jlen[id]]; recvJ(id); l_ = 0; w_ = 0 }
  :: atomic { role[1-id] == PRIMARY && role[id] == BACKUP && ep[1-id] == ep[id] && asked[id] != ep[id]+1 &&
              mode[id] != (mode[1-id] | propose[1-id]) ->
       mode[id] = mode[1-id] | propose[1-id] }     /* record header: mode; promise persisted before the ack */
  /* ACK{epoch, lsn, restarts} from the backup (lossy, delayed) */
  :: atomic { link[id]?t_,e_,l_,s_ ->
       if
       :: role[id] == PRIMARY && e_ == ep[id] && RSOK(id) && l_ > bAck[id] && l_ <= jlen[id] -> bAck[id] = l_; ackWrites(id)
       :: else -> skip                              /* lower epoch, from before a restart, or not primary: rejected */
       fi; t_ = 0; e_ = 0; l_ = 0; s_ = 0 }
  :: atomic { arbOut[id]?t_,e_,l_ ->
       if
       :: t_ == GRANT && role[id] == BACKUP && asked[id] == e_ && ep[id]+1 == e_ ->
            promote(id, e_); mode[id] = ARB; alone[id] = 1  /* grant = record {e+1, primary=me, backup inactive} */
       :: t_ == GRANT && role[id] == PRIMARY && reo[id] && l_ == rq[id] && e_ == ep[id]+1 ->
#ifdef REACH_REOPEN
            assert(false);                         /* witness: a restarted primary reopens in a new epoch */
#endif
            promote(id, e_); mode[id] = ARB; alone[id] = 1  /* record {e+1, primary=me, backup inactive} */
       :: t_ == OK && role[id] == PRIMARY && l_ == rq[id] && e_ == ep[id] && pend[id] == INACT ->
            dlen[id] = jlen[id]; alone[id] = 1; pend[id] = 0; ackWrites(id)  /* persisted after the records before it */
       :: t_ == OK && role[id] == PRIMARY && l_ == rq[id] && e_ == ep[id] && pend[id] == ACT ->
            pend[id] = 0
       :: t_ == OK && role[id] == PRIMARY && l_ == rq[id] && e_ == ep[id] && pend[id] == ARBMODE ->
            pend[id] = 0; mode[id] = ARB; propose[id] = 0   /* then tells the backup (next record) */
       :: t_ == NO && role[id] == PRIMARY && l_ == rq[id] && e_ > ep[id] ->
            role[id] = WAITING; alone[id] = 0; pend[id] = 0; bAck[id] = 0; cl[id] = 0; resync[id] = 0  /* deposed */
       :: t_ == NO && role[id] == PRIMARY && l_ == rq[id] && e_ <= ep[id] ->
            if :: pend[id] == REOPEN -> reo[id] = 0 :: else fi; pend[id] = 0
       :: else -> skip                              /* stale answer: not to the current request */
       fi; t_ = 0; e_ = 0; l_ = 0 }
  /* ---------------- faults ---------------- */
  :: atomic { role[id] != DOWN && !crashed[id] && faults < MAXF -> crash(id) }
  :: atomic { role[id] == DOWN && !restarted[id] -> restarted[id] = 1;
       if :: wasprim[id] && !fenced[id] -> role[id] = PRIMARY; cl[id] = jlen[id];
             if :: !alone[id] -> RESTART_RESYNC(id) :: else fi   /* backup was active: it may hold records we lost */
          :: else -> role[id] = WAITING; if :: fenced[id] -> reo[id] = 0 :: else fi
       fi }
  od
}

/* Re-seed from the members' own durable records (Go: the newest record either member learned).
 * claim = the epoch a member may hold:
 * primary there (wasprim), or asked for a takeover into it (asked > ep). A primary holding the
 * arbiter's consent to commit alone at e beats a takeover claim into e+1 (the lost arbiter cannot
 * have granted both). During the re-seed the members adopt the new arbiter incarnation and reject
 * answers of the lost one: modelled by discarding the answers in flight. */
inline claim(m, c) {
  if :: asked[m] > ep[m] -> c = asked[m] :: wasprim[m] && asked[m] <= ep[m] -> c = ep[m] :: else -> c = 0 fi
}
inline reseed() {
  claim(0, c0_); claim(1, c1_);
  if
  :: wasprim[0] && alone[0] && c1_ == ep[0]+1 && asked[1] == c1_ -> c1_ = 0
  :: wasprim[1] && alone[1] && c0_ == ep[1]+1 && asked[0] == c0_ -> c0_ = 0
  :: else
  fi;
  /* equal claims: a member primary in that epoch holds it for certain; an ask into it (a takeover
   * ask racing the primary's own reopen into the same epoch) was then not granted */
  if :: c1_ > c0_ || (c1_ == c0_ && wasprim[1] && c1_ == ep[1]) -> aPrim = 1; aEp = c1_ :: else -> aPrim = 0; aEp = c0_ fi;
  aActive = 0; aLost = 0; c0_ = 0; c1_ = 0;
#ifndef MUTANT_RESEED_KEEPS_ANSWERS
  do :: arbOut[0]?_,_,_ :: arbOut[1]?_,_,_ :: empty(arbOut[0]) && empty(arbOut[1]) -> break od;
#endif
  PERSIST
}

proctype Arbiter() {
end:
  do
  :: atomic { !aLost && !aDiskLossUsed && faults < MAXF -> aLost = 1; aDiskLossUsed = 1; faults++; aEp = 0; aPrim = 0; aActive = 0
#ifdef MUTANT_ARBITER_FORGETS
       ; dEp = 0; dPrim = 0; dActive = 0; dirty = 0
#endif
     }
  :: atomic { aLost -> reseed() }
#ifdef MUTANT_ARBITER_FORGETS
  :: atomic { dirty -> dEp = aEp; dPrim = aPrim; dActive = aActive; dirty = 0 }     /* late fsync */
  :: atomic { !aRestartUsed && faults < MAXF -> aRestartUsed = 1; faults++; aEp = dEp; aPrim = dPrim; aActive = dActive; dirty = 0 }
#endif
  od
}

init {
  atomic {
    role[0] = PRIMARY; role[1] = BACKUP; ep[0] = 1; ep[1] = 1; wasprim[0] = 1;
    aEp = 1; aPrim = 0; aActive = 1;
#ifdef MUTANT_ARBITER_FORGETS
    dEp = 1; dPrim = 0; dActive = 1;
#endif
    run Member(0); run Member(1); run Arbiter()
  }
}
