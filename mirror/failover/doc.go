// Package failover is the pure decision logic of a Tandem mirror tier: the
// failover member (primary / backup / async), the arbiter and the agent, as
// deterministic state machines (DESIGN §3 "Failover rules", "Who decides",
// "Epochs fence everything").
//
// What it must never do: import anything beyond the standard library (see
// TestImportsOnlyStdlib), start goroutines, read clocks, draw random numbers,
// open sockets or files. Time arrives as Tick values, inputs as Message
// values; every Step/Tick returns a Ready.
//
// # The Ready contract (etcd-raft shape)
//
// A shell owns one loop per core and, for every Ready, in this order:
//  1. persists and fsyncs HardState, Truncate (quarantining dropped records
//     when asked), Entries, ArbiterState, AgentState;
//  2. sends Messages;
//  3. performs Actions (Promote, Demote, StopCommitting, StartCommitting,
//     AckClients up to an LSN, Fence, RejectWrite);
//  4. logs Events and updates metrics.
//
// A crash anywhere loses only what was not persisted; the core is rebuilt with
// NewMember(cfg, hardState, base, journal, now), NewArbiter(cfg, state, now) or
// NewAgent(cfg, state).
//
// # Types (for the shells and the Promela model)
//
//   - Member: one failover member or async. Durable: HardState {Epoch, Role,
//     Mode, ModeSeq, BackupActive, Known (last arbiter Record), Asked
//     (TakeoverAsk), ArbiterSession, NoFailover, SteppedDown, Fenced, Losses
//     (DataLoss), NeedsRebuild} plus
//     the journal ([]Entry after a Base {LSN, Epoch}: records up to it
//     purged or, after a re-seed, never held). Status: primary, in-trouble,
//     backup, async, transition, waiting, needs-rebuild. PurgeableUpTo and
//     Purged bound and record a purge; Reseeded is the hard state after a
//     re-seed.
//   - Arbiter: ArbiterState {Seeded, Record}; Record {Version{Epoch,Seq},
//     Primary, Backup, BackupActive, Mode, ForkLSN}. Requests are
//     MsgArbiterReq with an ArbiterOp: OpRead, OpBackupInactive,
//     OpBackupActive, OpTakeover, OpArbiterMode, OpHandover (CAS on Seen),
//     OpReport (re-seeding). An arbiter without state answers every request
//     only with a Reseed challenge; each member then raises and persists
//     HardState.ArbiterSession and reports its Known record; the arbiter
//     seeds itself with the newer of the two reports. Members ignore answers
//     whose Session is older than theirs, so a decision the arbiter gave just
//     before losing its disk (and has forgotten) is never acted on.
//   - Agent: AgentState {Fences, LastFenced}; answers MsgAgentQuery with
//     MsgAgentResp {Down, Fenced, Epoch, Entries (tail), FullLog} only after
//     ActFence was executed and reported (MsgFenceDone).
//   - Alignment {Aligned, Reasons}: the policy gate verdict
//     (MsgSetAlignment); not aligned refuses automatic takeover.
//   - Mutations: TEST-ONLY deliberate bugs used by the simulation's
//     self-test; the zero value is the correct protocol.
//
// # Protocol summary
//
// Commit: the primary acknowledges (ActAckClients) an LSN once it is durable
// locally and either the backup acknowledged it durably in the same epoch, or
// the arbiter answered OK to this primary's current OpBackupInactive CAS, or
// (agent-controlled mode) 2×QoS passed without the backup, whose durable
// promise forbids it to use the arbiter. Takeover: OpTakeover granted by the
// arbiter (epoch+1 recorded there first, only if the record says the backup
// is active, the mode is arbiter-controlled and the arbiter too lost the
// primary), or the primary's agent fenced it and handed over its journal
// tail. Mode changes are ordered by (epoch, ModeSeq); a primary announces
// modes with ModeSeq >= 1 in every append, and a member that learns a new
// epoch any other way holds the conservative agent-mode promise (ModeSeq 0)
// until the new primary's first append. A fenced member (HardState.Fenced) never acts as primary and never
// completes an arbiter grant until the primary of its epoch talks to it or it
// learns a higher epoch; it may still take over through fence + tail. A forced
// promotion takes the operator's highest known epoch (MsgForcePromote.Epoch)
// so epochs never repeat, and records DataLoss{From: first LSN not known
// committed, To: primary's last known LSN}. A backup persists its TakeoverAsk before asking and acknowledges
// nothing of that epoch until the record moves past the version it asked on;
// the grant records ForkLSN = the asker's last LSN and the new primary
// truncates to it. Any message with a higher epoch demotes a former primary
// (ActDemote); its unacknowledged tail is quarantined by log matching.
//
// Shipping before the fsync (ShipsEarly): while its backup is active the
// primary's appends to it may leave before the records are durable here,
// so the two fsyncs overlap; the commit an early append carries is lowered
// to what is durable. A primary that crashes in between can come back
// without records its backup holds, and writing other records at those
// (epoch, LSN)s would fork the history silently. So a primary that
// restarts with BackupActive (durable) takes no writes until it has
// resynced: its appends ask (Resync) for the backup's records of its
// epoch after its own journal and it takes them, then ActResumeWrites.
// With the backup silent past the QoS it opens a new epoch instead: the
// arbiter records it (OpReopen, a CAS; the ask is persisted like a
// takeover's, and FenceEpoch makes the agent report that epoch so a
// takeover through the agent starts after it), or, agent-controlled, on
// its own after 2×QoS. HardState.Restarts travels in every append and its
// answer, so an append or acknowledgement from before the restart is
// dropped. With BackupActive false nothing was shipped early: the hard
// state that ends it is saved only after every earlier record is durable.
//
// # DESIGN §3 rows and clauses → tests
//
//	Failover rules
//	  backup misses acks > QoS (in-trouble, CAS, alone)  TestRule01_QoSTimeout_InTroubleUntilArbiterRecordsBackupInactive
//	    ... not if takeover already granted               TestRule01b_ArbiterRefusesBackupInactiveAfterGrant
//	  primary loses arbiter, keeps backup (agent mode,   TestRule02_PrimaryLosesArbiter_AgentModeThen2xQoSThenArbiterModeAgain
//	    2×QoS alone, back to arbiter mode)
//	  primary loses backup and arbiter (arbiter mode)     TestRule03_PrimaryLosesBackupAndArbiter_InTroubleIndefinitely
//	  backup + arbiter lost primary: grant                TestRule04_BackupTakesOverWithArbiterGrant
//	  arbiter still sees primary: no takeover             TestRule05_NoTakeoverWhileArbiterSeesPrimary
//	  backup loses primary and arbiter: agent fence+tail  TestRule06_BackupLosesPrimaryAndArbiter_TakeoverViaAgentFenceAndTail,
//	                                                      TestRule06b_AgentSaysPrimaryRunning_NoTakeover
//	  non-active backup, primary fails                    TestRule07_NonActiveBackup_TakesOverOnlyWithMissingJournal,
//	                                                      TestRule07b_ForcedPromotionRecordsDataLoss
//	  all three links lost                                TestRule08_AllLinksLost_NobodyTakesOver
//	  former primary comes back                           TestRule09_FormerPrimaryRejoinsNeverActsAsPrimary
//	  planned failover                                    TestRule10_PlannedFailover_ZeroLossHandover
//	  "no failover"                                       TestRule11_NoFailoverFlag_BlocksAutomaticTakeover
//	  policy gate verdict                                 TestAlignmentVerdictRefusesAutomaticTakeover,
//	                                                      TestAlignmentVerdictNeverPermitsWhatDataSafetyForbids
//	Who decides
//	  commit needs two of three                           TestWho01_CommitNeedsBackupAckOrArbiterConsentOrPromise
//	  takeover needs grant or fenced agent + journal      TestWho02_TakeoverNeedsGrantOrFencedAgentAndJournal
//	  CAS on the version the asker saw                    TestWho03_ArbiterDecisionIsCASOnSeenVersion
//	  fsynced before the answer                           TestWho04_ArbiterPersistsBeforeAnswering
//	  lost disk: answers nothing until re-seeded          TestWho05_EmptyArbiterAnswersNothingUntilReseeded
//	  primary acts only on its current request's answer   TestWho06_PrimaryActsOnlyOnAnswerToCurrentRequest
//	  entering agent mode: promise first                  TestWho07_EnterAgentMode_BackupPromisesFirst
//	  leaving agent mode: active backup, arbiter first    TestWho08_LeaveAgentMode_OnlyWithActiveBackupArbiterFirst
//	    ... late answer after going alone is ignored      TestWho08b_LateArbiterModeAnswerAfterGoingAloneIgnored
//	  asked backup stops acking the old epoch             TestWho09_BackupStopsAckingOldEpochAfterAsking
//	  DR promotion without the arbiter                    not implemented (see package sim doc / issue note)
//	Epochs fence everything / bad input                   TestEpochs_LowerEpochRejectedByEveryCore, TestBadInput_Member,
//	                                                      TestBadInput_Arbiter, TestBadInput_Agent
//	Journal purge and rebuild
//	  primary purges only what the pair and held asyncs   TestPurge01_PrimaryKeepsWhatTheBackupAndEveryHeldAsyncNeed
//	  released async becomes needs-rebuild, never acks    TestPurge02_ReleasedAsyncBecomesNeedsRebuildAndNeverAcks
//	  re-seeded member catches up from its snapshot       TestPurge03_ReseededMemberCatchesUpFromItsSnapshot
//	  needs-rebuild never takes over, never forced        TestPurge04_NeedsRebuildBackupNeverTakesOverOrIsForced
//	  a stale "journal gone" forces nothing               TestPurge05_StaleJournalGoneDoesNotForceARebuild
//	  purged records of a lost history: needs-rebuild     TestPurge06_AsyncOnALostBranchNeedsRebuild
//	  agent tail / whole journal after a base             TestPurge07_AgentTailFromAPurgedJournal, TestPurge08_AgentFullLogAfterABase
//	Shipping before the fsync
//	  restarted primary resyncs before it writes          TestResync01_RestartedPrimaryTakesTheBackupsRecordsBeforeWriting
//	  appends and acks from before the restart dropped    TestResync02_StaleAppendFromBeforeTheRestartIsDropped
//	  backup silent: new epoch (arbiter / agent mode)     TestResync03_WithoutItsBackupTheRestartedPrimaryReopens,
//	                                                      TestResync04_AgentControlledRestartReopensAfterTwiceTheQoS,
//	                                                      TestArbiterReopenOnlyForTheRecordedPrimaryOfItsEpoch
//	  fence reports the epoch a reopen may have made      TestResync05_FenceReportsTheEpochAReopenMayHaveCreated
//	  a resync ends with its epoch                        TestResync06_AResyncEndsWithItsEpoch
//	  restarted again: the persisted reopen asked again   TestResync07_ARestartedPrimaryAsksItsPersistedReopenAgain
//	Agent                                                 TestAgent_FenceThenPersistThenTail
//	Architecture                                          TestImportsOnlyStdlib
//
// The Promela model of this protocol, checked by spin in make test, maps
// its states to these types in model/MAPPING.md and the header of
// model/tier.pml.
package failover
