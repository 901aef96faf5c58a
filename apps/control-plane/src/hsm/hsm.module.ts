import { Global, Module } from '@nestjs/common';
import { HsmService } from './hsm.service.js';

@Global()
@Module({ providers: [HsmService], exports: [HsmService] })
export class HsmModule {}
