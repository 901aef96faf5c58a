import { ApiProperty } from '@nestjs/swagger';

/** What one cluster's agent handed to the pods of one namespace/service account, for one secret (never a value). */
export class ConsumptionView {
  @ApiProperty({ example: 'store-0042' }) cluster!: string;
  @ApiProperty({ example: 'checkout-db' }) secret!: string;
  @ApiProperty({ example: 3, description: 'the version of the latest grant' }) version!: number;
  @ApiProperty({ example: 'shop' }) namespace!: string;
  @ApiProperty({ example: 'checkout' }) serviceAccount!: string;
  @ApiProperty({ example: 12, description: 'fetches granted so far' }) grants!: number;
  @ApiProperty({ example: 'checkout-7d9f8-abcde', description: 'the pod of the latest grant' }) lastPod!: string;
  @ApiProperty() firstAt!: Date;
  @ApiProperty() lastAt!: Date;
}

export class ConsumptionPage {
  @ApiProperty({ type: [ConsumptionView] }) items!: ConsumptionView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}
