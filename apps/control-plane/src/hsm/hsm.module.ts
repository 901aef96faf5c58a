import { Module } from '@nestjs/common';
import { HsmService } from './hsm.service.js';

/** The HSM (PKCS#11 in worker threads). Imported by the modules that seal, wrap or sign. */
@Module({ providers: [HsmService], exports: [HsmService] })
export class HsmModule {}
